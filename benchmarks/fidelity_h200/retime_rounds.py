"""Would fewer re-timing rounds, or fewer finalists, pick the same entries? Read from stored GPU
studies, offline.

For each bucket's stored consolidation: with --rounds K, the re-timing samples (5 rounds each) are
cut to the first K rounds; with --finalists F, only the F tuned finalists with the fastest first
passes (no ties) compete, with vLLM's default; with --drop X, from the second round on a tuned
finalist stops being re-timed once its fastest round so far is more than X slower than the
leader's slowest (it can no longer win), and it competes with the rounds it had. The pick is
compared with the one made from all finalists and all rounds, both judged by their full
re-timing medians.

    python benchmarks/fidelity_h200/retime_rounds.py --rounds 3 benchmarks/*/studies.db ...
    python benchmarks/fidelity_h200/retime_rounds.py --finalists 2 benchmarks/*/studies.db ...
    python benchmarks/fidelity_h200/retime_rounds.py --drop 0 benchmarks/*/studies.db ...
"""

from __future__ import annotations

import argparse
import statistics

import optuna


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=None, help="keep the first K rounds")
    ap.add_argument("--finalists", type=int, default=None, help="keep the F first-pass best")
    ap.add_argument("--drop", type=float, default=None,
                    help="stop re-timing a finalist that trails the leader by more than this")
    ap.add_argument("storages", nargs="+", help="SQLite files of tuned studies")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print("| storage | buckets | picks changed | worst loss | mean loss | re-timings |")
    print("|---|---:|---:|---:|---:|---:|")
    for db in args.storages:
        storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
        losses, timings = [], 0
        for summary in optuna.get_all_study_summaries(storage):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            cons = study.user_attrs.get("consolidation")
            finalists = [c for c in (cons or {}).get("candidates", [])
                         if c.get("us") and c.get("samples")]
            if not finalists:
                continue
            kept = _kept(finalists, args.finalists)
            used = {id(c): c["samples"][:args.rounds] for c in kept}
            if args.drop is not None:
                used = _dropped(kept, args.drop)
            pick = min(kept, key=lambda c: statistics.median(used[id(c)]))
            best = min(finalists, key=lambda c: c["us"])
            losses.append(pick["us"] / best["us"] - 1)
            timings += sum(len(v) for v in used.values())
        changed = sum(loss > 0 for loss in losses)
        print(f"| {db} | {len(losses)} | {changed} | {100 * max(losses):.2f}% | "
              f"{100 * sum(losses) / len(losses):.3f}% | {timings} |")


def _dropped(finalists: list[dict], margin: float) -> dict[int, list[float]]:
    """Each finalist's samples up to the round after which it could no longer win."""
    rounds = min(len(c["samples"]) for c in finalists)
    alive = list(finalists)
    used = {id(c): c["samples"][:rounds] for c in finalists}
    for r in range(2, rounds):
        leader = min(alive, key=lambda c: statistics.median(c["samples"][:r]))
        ceiling = max(leader["samples"][:r]) * (1 + margin)
        for c in [c for c in alive if c["source"] == "tuned" and c is not leader]:
            if min(c["samples"][:r]) > ceiling:
                alive.remove(c)
                used[id(c)] = c["samples"][:r]
    return used


def _kept(finalists: list[dict], count: int | None) -> list[dict]:
    """The count tuned finalists with the fastest first passes, and the others (vLLM's default)."""
    if count is None:
        return finalists
    tuned = sorted((c for c in finalists if c["source"] == "tuned" and c.get("first_pass_us")),
                   key=lambda c: c["first_pass_us"])
    return tuned[:count] + [c for c in finalists if c not in tuned]


if __name__ == "__main__":
    main()
