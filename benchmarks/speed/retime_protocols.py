"""How much worse would a cheaper re-timing pick? A bootstrap over stored GPU consolidations.

For every bucket of every stored tune, each re-timed candidate's median over all its rounds is
taken as its time. A re-timing protocol is then replayed many times by drawing its rounds, with
replacement, from the stored ones (the same rounds for every candidate: a round's drift hits them
all alike, as in the tune), and picking the fastest median. Its loss is the time of its pick over
the fastest candidate's. The 5-round protocol is replayed the same way, so both are judged
against the same times and carry the same kind of noise.

    python benchmarks/speed/retime_protocols.py benchmarks/**/studies.db

Protocols: rounds R (2, 3 or 5, or 2 up to M=512 and 3 above) x candidates (all re-timed, or
the `n` best first passes plus vLLM's default and the compared entry, no ties beyond them, at
every M or above M=512 only). A candidate dropped early (fewer rounds
stored) keeps the rounds it has, drawn modulo their number.
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

import optuna

RANGES = [("M <= 64", 64), ("M 96-512", 512), ("M >= 1024", 1 << 30)]


def buckets(db: Path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        cons = study.user_attrs.get("consolidation") or {}
        cands = [c for c in cons.get("candidates", []) if c.get("us") and c.get("samples")]
        rounds = max((len(c["samples"]) for c in cands), default=0)
        if len(cands) >= 2 and rounds >= 5:
            yield cons["M"], cands


def replay(cands: list[dict], rounds: int, keep: set[int], rng: random.Random,
           more_above: float | None = None) -> tuple[int, int]:
    """The pick and the rounds taken. more_above: after `rounds`, take 2 more when a config
    within 1% of the leader has rounds more than this far apart ((max - min) / median)."""
    drawn = [rng.randrange(5) for _ in range(rounds)]
    def samples(c):
        s = c["samples"]
        return [s[i % len(s)] for i in drawn]
    def pick():
        return min(keep, key=lambda i: statistics.median(samples(cands[i])))
    if more_above is not None:
        lead = statistics.median(samples(cands[pick()]))
        live = [samples(cands[i]) for i in keep
                if statistics.median(samples(cands[i])) <= lead * 1.01]
        if any((max(s) - min(s)) / statistics.median(s) > more_above for s in live):
            drawn += [rng.randrange(5) for _ in range(2)]
    return pick(), len(drawn)


def top_n(cands: list[dict], n: int) -> set[int]:
    tuned = sorted((i for i, c in enumerate(cands)
                    if c["source"] == "tuned" and c.get("first_pass_us")),
                   key=lambda i: cands[i]["first_pass_us"])
    return set(tuned[:n]) | {i for i, c in enumerate(cands) if c["source"] != "tuned"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("storages", nargs="+", type=Path)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--n", type=int, default=3)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(0)
    protocols = {"5 rounds, all": (5, False, None), "3 rounds, all": (3, False, None),
                 f"5 rounds, best {args.n}": (5, True, None),
                 f"3 rounds, best {args.n}": (3, True, None),
                 "3 rounds (+2 where they disagree by > 2%), all": (3, False, 0.02),
                 "3 rounds (+2 where they disagree by > 1%), all": (3, False, 0.01),
                 "2 rounds, all": (2, False, None),
                 "2 rounds (+2 where they disagree by > 2%), all": (2, False, 0.02),
                 "2 rounds (+2 where they disagree by > 1%), all": (2, False, 0.01),
                 "2 rounds up to M=512, 3 above (+2 where they disagree by > 2%), all":
                     ((2, 512, 3), False, 0.02),
                 f"2 rounds up to M=512, 3 above (+2 where they disagree by > 2%), all up to "
                 f"M=512, best {args.n} above": ((2, 512, 3), 512, 0.02)}
    losses = {p: [] for p in protocols}  # per bucket: the loss of each draw
    ranges = []  # per bucket: which M range it is in
    timings = {p: 0 for p in protocols}
    n_buckets = 0
    for db in args.storages:
        for M, cands in buckets(db):
            n_buckets += 1
            ranges.append(next(name for name, top in RANGES if M <= top))
            truth = [statistics.median(c["samples"]) for c in cands]
            best = min(truth)
            for name, (rounds, cut, more_above) in protocols.items():
                if isinstance(rounds, tuple):  # (rounds up to M=top, top, rounds above)
                    rounds = rounds[0] if M <= rounds[1] else rounds[2]
                if cut is not True and cut is not False:  # best n above M=cut only
                    cut = M > cut
                keep = top_n(cands, args.n) if cut else set(range(len(cands)))
                picks = [replay(cands, rounds, keep, rng, more_above) for _ in range(args.draws)]
                timings[name] += len(keep) * sum(r for _, r in picks) / args.draws
                losses[name].append([truth[i] / best - 1 for i, _ in picks])
    print(f"{len(args.storages)} storages, {n_buckets} buckets, {args.draws} draws each\n")
    print("| protocol | re-timings | mean loss | p99 loss | buckets with mean loss > 0.5% "
          "| worst bucket's mean loss |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in protocols:
        flat = sorted(x for b in losses[name] for x in b)
        per = [statistics.mean(b) for b in losses[name]]
        print(f"| {name} | {timings[name]:.0f} | {100 * statistics.mean(flat):.3f}% | "
              f"{100 * flat[int(0.99 * len(flat))]:.2f}% | {sum(p > 0.005 for p in per)} | "
              f"{100 * max(per):.2f}% |")
    print("\nBy batch size: mean loss, buckets with mean loss > 0.5%, worst bucket's mean loss\n")
    print("| protocol | " + " | ".join(f"{name} ({ranges.count(name)} buckets)"
                                       for name, _ in RANGES) + " |")
    print("|---|" + "---:|" * len(RANGES))
    for name in protocols:
        cells = []
        for r, _ in RANGES:
            per = [statistics.mean(b) for b, g in zip(losses[name], ranges) if g == r]
            cells.append(f"{100 * statistics.mean(per):.3f}%, {sum(p > 0.005 for p in per)}, "
                         f"{100 * max(per):.2f}%")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
