"""Write the moe-grid-table/1 file of a grid storage's bucket, also when the pass is unfinished.

The exhaustive mode writes a bucket's table when its pass finishes; a pass cut by its time bound
keeps its timings in the storage. This writes what is there, with a `coverage` note naming the
configs not timed (replay answers those as "not in the recorded table").

    python benchmarks/campaign/table_from_storage.py --storage benchmarks/grids_h200/grid.db \
        --M 256 --environment-from benchmarks/tables/..._M64.json shape=minimax_m25_tp4 device=h200
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import optuna  # noqa: E402

from autotune.files.grid_table import grid_table, table_file_name  # noqa: E402
from autotune.plan import build_plan  # noqa: E402
from autotune.problem.space import SearchSpace  # noqa: E402
from autotune.study.records import BucketOutcome, read_records  # noqa: E402
from benchmarks.benchmarker.campaign import compose  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--storage", type=Path, required=True)
    ap.add_argument("--M", type=int, required=True)
    ap.add_argument("--environment-from", type=Path, required=True,
                    help="a table of the same passes whose `environment` applies")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/tables"))
    ap.add_argument("overrides", nargs="+", help="shape=... device=... as the pass ran")
    args = ap.parse_args()
    plan = build_plan(compose(*args.overrides, "sampler=grid", "benchmark.name=gpu",
                              f"storage=sqlite:///{args.storage}"), probe_gpu=False)
    name = plan.study_name(args.M)
    records = read_records(optuna.load_study(study_name=name, storage=plan.storage))
    outcome = BucketOutcome(M=args.M, study_name=name, records=records, new_measurements=0,
                            excluded=0, duplicates=0, seconds=0.0, stop_reason="time bound")
    environment = json.loads(args.environment_from.read_text())["environment"]
    table = grid_table(plan, outcome, environment)
    timed = {SearchSpace.key(r.config) for r in records}
    missing = [c for c in plan.space.configs() if SearchSpace.key(c) not in timed]
    table["coverage"] = {"timed": len(timed), "of": plan.space.size(), "not_timed": missing}
    path = args.out / table_file_name(plan, args.M)
    path.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{path}: {len(timed)} of {plan.space.size()} configs")


if __name__ == "__main__":
    main()
