"""Would fewer re-timing rounds pick the same entries? Read from stored GPU studies, offline.

For each bucket's stored consolidation, the finalists' re-timing samples (5 rounds each) are cut to
the first K rounds; the finalist with the fastest K-round median is compared with the one the 5
rounds chose, both judged by their 5-round medians.

    python benchmarks/fidelity_h200/retime_rounds.py --rounds 3 benchmarks/*/studies.db ...
"""

from __future__ import annotations

import argparse
import statistics

import optuna


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
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
            pick = min(finalists, key=lambda c: statistics.median(c["samples"][:args.rounds]))
            best = min(finalists, key=lambda c: c["us"])
            losses.append(pick["us"] / best["us"] - 1)
            timings += sum(len(c["samples"]) for c in finalists)
        changed = sum(loss > 0 for loss in losses)
        print(f"| {db} | {len(losses)} | {changed} | {100 * max(losses):.2f}% | "
              f"{100 * sum(losses) / len(losses):.3f}% | {timings} |")


if __name__ == "__main__":
    main()
