"""Where a whole tune's time went, bucket by bucket, read from its storage (CPU, after the run).

For each bucket's study: its measurements, the search's wall time (first trial's start to the
last's end), the median trial, the trials that waited (over --wait seconds: compiles, at the
first trial also the compile pool's start), and the consolidation's time and candidates.

    python benchmarks/speed/bucket_times.py benchmarks/speed/h100/session10/qwen3_fp8_t1/studies.db
"""

from __future__ import annotations

import argparse
import statistics

import optuna

from autotune.study.records import StudyAttr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("storage", help="a tune's SQLite file")
    ap.add_argument("--wait", type=float, default=0.4, help="a trial this long waited (s)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{args.storage}")
    print("| M | trials | search s | median trial s | trials that waited (s) "
          "| consolidation s | candidates |")
    print("|---:|---:|---:|---:|---|---:|---:|")
    studies = [optuna.load_study(study_name=s.study_name, storage=storage)
               for s in optuna.get_all_study_summaries(storage)]
    for study in sorted(studies, key=lambda s: s.user_attrs.get(StudyAttr.M, 0)):
        trials = [t for t in study.get_trials(deepcopy=False)
                  if t.datetime_start and t.datetime_complete]
        if not trials:
            continue
        took = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
        span = (max(t.datetime_complete for t in trials)
                - min(t.datetime_start for t in trials)).total_seconds()
        waited = sum(s for s in took if s > args.wait)
        cons = study.user_attrs.get(StudyAttr.CONSOLIDATION) or {}
        print(f"| {study.user_attrs.get(StudyAttr.M)} | {len(trials)} | {span:.1f} | "
              f"{statistics.median(took):.3f} | {sum(s > args.wait for s in took)} "
              f"({waited:.1f}) | {cons.get('seconds', 0):.1f} | "
              f"{len(cons.get('candidates', []))} |")


if __name__ == "__main__":
    main()
