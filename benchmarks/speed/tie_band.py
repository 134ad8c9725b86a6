"""Would a narrower GROUP_SIZE_M tie band write other entries? Read from stored tunes, offline.

`consolidate/ties.py` writes the smallest GROUP_SIZE_M among the fastest config's variants that
lie within its spread over the re-timing's rounds (max - min over the median). One slow round
widens that band. This replays each stored consolidation with the spread of the middle rounds
(the fastest and slowest of five dropped) and lists the buckets whose entry would change.

    python benchmarks/speed/tie_band.py benchmarks/speed/h*/session*/*/studies.db
"""

from __future__ import annotations

import statistics
import sys

import optuna

from autotune.consolidate.ties import writing_order


def middle_spread(samples: list[float]) -> float:
    kept = sorted(samples)[1:-1] if len(samples) >= 5 else sorted(samples)
    return (kept[-1] - kept[0]) / statistics.median(samples)


def main(storages: list[str]) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print("| storage | bucket | written: GROUP_SIZE_M, us | with the middle rounds' spread |")
    print("|---|---|---|---|")
    changed = total = 0
    for db in storages:
        storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
        for summary in optuna.get_all_study_summaries(storage):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            candidates = [c for c in (study.user_attrs.get("consolidation") or {}).get(
                "candidates", []) if c.get("us") and c.get("samples")]
            if not candidates:
                continue
            total += 1
            now = writing_order(candidates)[0]
            narrow = writing_order([{**c, "spread": middle_spread(c["samples"])}
                                    for c in candidates])[0]
            if now["config"] != narrow["config"]:
                changed += 1
                print(f"| {db} | {summary.study_name.rsplit('/', 1)[1]} | "
                      f"{now['config']['GROUP_SIZE_M']}, {now['us']:.1f} | "
                      f"{narrow['config']['GROUP_SIZE_M']}, {narrow['us']:.1f} |")
    print(f"\n{changed} of {total} entries would change.")


if __name__ == "__main__":
    main(sys.argv[1:])
