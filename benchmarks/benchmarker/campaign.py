"""GPU measurements of the benchmarker (issue: trustworthy timings, compile overlap, faults).

Run on a GPU machine from the repository root; writes JSON and a markdown summary to OUT:

    python benchmarks/benchmarker/campaign.py --out $OUT [--shape minimax_m25_tp4] [--bucket 16]

Steps (each bounded so the whole fits one device call):
 1. exhaustive pass over the `vllm` space at one bucket, twice (two storages): wall time, GPU idle
    share waiting for compiles, compile count; top-5 of each pass re-timed interleaved;
 2. repeatability: one config timed 10 times spread through a run (CV);
 3. hot vs cold L2 at M = 1, 4, 16 on a fixed subset of configs: winners, and how much the hot
    winner loses when timed cold;
 4. fault containment: a tune with a deliberately faulting config in the middle.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from autotune.bench import open_benchmarker  # noqa: E402
from autotune.bench.gpu import open_gpu_benchmarker  # noqa: E402
from autotune.config import register_configs  # noqa: E402
from autotune.plan import build_plan  # noqa: E402
from autotune.problem.space import SearchSpace  # noqa: E402
from autotune.run.tune import tune  # noqa: E402
from tests.gpu_faults import faulting_timer  # noqa: E402


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from autotune.config import config_root

    register_configs()
    with initialize_config_dir(config_dir=str(config_root()), version_base="1.3"):
        return OmegaConf.to_object(hydra_compose(config_name="config", overrides=list(overrides)))


def plan_for(out: Path, shape: str, *overrides: str):
    return build_plan(compose(f"shape={shape}", "device=auto", "progress=false",
                              "benchmark.compile_workers=8",
                              f"output_dir={out}/configs", f"table_dir={out}/tables",
                              *overrides))


def exhaustive(out: Path, shape: str, M: int, tag: str) -> dict:
    plan = plan_for(out, shape, "sampler=grid", f"buckets=[{M}]",
                    f"storage=sqlite:///{out}/grid_{tag}.db")
    start = time.perf_counter()
    result = tune(plan)
    wall = time.perf_counter() - start
    outcome = result.outcomes[0]
    ok = sorted((r for r in outcome.records if r.ok), key=lambda r: r.us)
    stats = result.bench_stats
    return {"tag": tag, "M": M, "wall_s": wall, "configs": len(outcome.records),
            "infeasible": outcome.infeasible, "stats": stats,
            "top5": [(r.config, r.us) for r in ok[:5]]}


def best_configs(db: Path, n: int) -> list[dict]:
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    out = []
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        done = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("us")]
        out += [t.user_attrs["config"] for t in sorted(done, key=lambda t: t.user_attrs["us"])[:n]]
    return out


def interleaved(bench, configs: list[dict], M: int, rounds: int = 5) -> list[float]:
    """Median over rounds of A B C ... A B C ... timings."""
    samples: list[list[float]] = [[] for _ in configs]
    for _ in range(rounds):
        for i, c in enumerate(configs):
            m = bench.measure(c, M)
            samples[i].append(m.us if m.ok else float("nan"))
    return [statistics.median(s) for s in samples]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shape", default="minimax_m25_tp4")
    ap.add_argument("--bucket", type=int, default=16)
    ap.add_argument("--skip", nargs="*", default=[])
    ap.add_argument("--grid-db", type=Path, help="an exhaustive pass's storage: its best 30 "
                    "configs join the hot/cold subset")
    ap.add_argument("--grid-dbs", type=Path, nargs=2, help="two exhaustive passes' storages: "
                    "their top 5 are re-timed interleaved")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {}

    def save():
        (out / "benchmarker.json").write_text(json.dumps(report, indent=1, default=str))

    if "grid" not in args.skip:
        report["grid"] = [exhaustive(out, args.shape, args.bucket, "a")]
        save()
        report["grid"].append(exhaustive(out, args.shape, args.bucket, "b"))
        save()
    tops = [[c for c, _ in g["top5"]] for g in report.get("grid", [])]
    if args.grid_dbs:
        tops = [best_configs(db, 5) for db in args.grid_dbs]
    if "agree" not in args.skip and len(tops) == 2:
        plan = plan_for(out, args.shape, f"buckets=[{args.bucket}]")
        bench = open_benchmarker(plan)
        try:
            union = []
            for c in tops[0] + tops[1]:
                if SearchSpace.key(c) not in {SearchSpace.key(u) for u in union}:
                    union.append(c)
            bench.prepare(union, args.bucket)
            retimed = interleaved(bench, union, args.bucket)
            keys = [{SearchSpace.key(c) for c in t} for t in tops]
            best = [min(r for c, r in zip(union, retimed) if SearchSpace.key(c) in k) for k in keys]
            report["top5_agreement"] = {"configs": union, "retimed_us": retimed,
                                        "best_of_pass_a_us": best[0], "best_of_pass_b_us": best[1],
                                        "difference": abs(best[0] - best[1]) / min(best)}
            save()
            # Repeatability: pass a's winner, 10 times, spread through other measurements.
            reference = tops[0][0]
            others = random.Random(0).sample(list(plan.space.configs()), 30)
            bench.prepare(others, args.bucket)
            times = []
            for i in range(10):
                times.append(bench.measure(reference, args.bucket).us)
                for c in others[3 * i:3 * i + 3]:
                    bench.measure(c, args.bucket)
            report["repeatability"] = {"config": reference, "us": times,
                                       "cv": statistics.stdev(times) / statistics.mean(times)}
        finally:
            bench.close()
        save()

    if "l2" not in args.skip:
        report["l2"] = {}
        hot_plan = plan_for(out, args.shape, "benchmark.l2=hot")
        subset = random.Random(1).sample(list(hot_plan.space.configs()), 60)
        subset += [c for g in report.get("grid", []) for c, _ in g["top5"]]
        if args.grid_db and args.grid_db.exists():
            subset += best_configs(args.grid_db, 30)
        rows: dict[int, dict[str, list]] = {M: {} for M in (1, 4, 16)}
        for mode in ("hot", "cold"):
            bench = open_benchmarker(plan_for(out, args.shape, f"benchmark.l2={mode}"))
            try:
                bench.prepare(subset, 16)
                for M in rows:
                    rows[M][mode] = [bench.measure(c, M).us for c in subset]
            finally:
                bench.close()
        for M, row in rows.items():
            valid = [i for i in range(len(subset)) if row["hot"][i] and row["cold"][i]]
            hot_win = min(valid, key=lambda i: row["hot"][i])
            cold_win = min(valid, key=lambda i: row["cold"][i])
            report["l2"][M] = {
                "configs": len(valid),
                "hot_winner": subset[hot_win], "cold_winner": subset[cold_win],
                "same_winner": hot_win == cold_win,
                "hot_winner_cold_us": row["cold"][hot_win],
                "cold_winner_cold_us": row["cold"][cold_win],
                "hot_winner_loss_cold": row["cold"][hot_win] / row["cold"][cold_win] - 1,
                "cold_over_hot_median": statistics.median(
                    row["cold"][i] / row["hot"][i] for i in valid),
            }
        save()

    if "fault" not in args.skip:
        # One config of a 16-config grid (the 10th timed) faults with an illegal address.
        fault = {"BLOCK_SIZE_M": 32, "BLOCK_SIZE_K": 64, "num_stages": 3}
        plan = plan_for(out, args.shape, "buckets=[16]", f"storage=sqlite:///{out}/fault.db",
                        "sampler=grid", "search_space.params.BLOCK_SIZE_M=[16,32]",
                        "search_space.params.BLOCK_SIZE_N=[64]",
                        "search_space.params.GROUP_SIZE_M=[1]", "search_space.params.num_warps=[4]")
        start = time.perf_counter()
        bench = open_gpu_benchmarker(plan, timer=faulting_timer(fault))
        try:
            result = tune(plan, bench=bench)
        finally:
            bench.close()
        records = result.outcomes[0].records
        report["fault"] = {"planted": fault, "measured": len(records),
                           "order": [(r.number, r.config, r.us, r.infeasible) for r in records],
                           "infeasible": [(r.config, r.infeasible) for r in records if not r.ok],
                           "feasible": sum(1 for r in records if r.ok),
                           "entry": result.entries.get(16), "files": [str(f) for f in result.files],
                           "wall_s": time.perf_counter() - start, "stats": result.bench_stats}
        save()
    print(json.dumps(report, indent=1, default=str)[-6000:])


if __name__ == "__main__":
    main()
