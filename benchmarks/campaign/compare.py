"""Tuned entries against the exhaustive grid, re-timed interleaved in one run per bucket (GPU).

For every recorded grid table of the shape: the tuned file's entry for that M, the grid's best
few configs (by their recorded times), vLLM's default config and the entry vLLM would take from a
shipped file (as the kernel runs it), all on our kernel, timed in `--rounds` interleaved rounds
(A B C, B C A, ...; median). Writes JSON and a markdown table.

    python benchmarks/campaign/compare.py --shape minimax_m25_tp4 --tuned 'benchmarks/x/E=...json' \
        --tables 'benchmarks/tables/NVIDIA_H200_E256_N384_K3072_fp8block_M*.json' \
        --shipped 'tests/data/vllm_configs/E=256,N=384,device_name=NVIDIA_H100_80GB_HBM3,...json' \
        --out benchmarks/x/compare
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from autotune.baselines import nearest_entry, vllm_default_config  # noqa: E402
from autotune.bench import open_benchmarker  # noqa: E402
from autotune.consolidate import Comparison, retime  # noqa: E402
from autotune.formats import read_entries  # noqa: E402
from autotune.plan import build_plan  # noqa: E402
from autotune.space import SearchSpace  # noqa: E402
from benchmarks.benchmarker.campaign import compose  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", required=True)
    ap.add_argument("--tuned", required=True, help="the tuned vLLM config file")
    ap.add_argument("--tables", required=True, nargs="+",
                    help="moe-grid-table/1 files (or globs) of the shape, one per M")
    ap.add_argument("--shipped", help="a vLLM config file whose entries join the comparison")
    ap.add_argument("--top", type=int, default=3, help="grid configs re-timed, best first")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("overrides", nargs="*", help="more key=value settings (device=auto default)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    overrides = [f"shape={args.shape}", "progress=false", "benchmark.compile_workers=8",
                 *args.overrides]
    if not any(o.startswith("device=") for o in overrides):
        overrides.append("device=auto")
    plan = build_plan(compose(*overrides))
    tuned = read_entries(Path(args.tuned))
    shipped = Comparison(Path(args.shipped), read_entries(Path(args.shipped))) if args.shipped else None
    tables = sorted((json.loads(Path(p).read_text()) for g in args.tables for p in glob.glob(g)),
                    key=lambda t: t["M"])
    bench = open_benchmarker(plan)
    rows = []
    try:
        for table in tables:
            M = table["M"]
            ranked = sorted((r for r in table["results"] if r.get("us")), key=lambda r: r["us"])
            grid = [{k: r["config"][k] for k in plan.space.params} for r in ranked[:args.top]]
            candidates = {"tuned": nearest_entry(tuned, M)}
            candidates.update({f"grid #{i + 1}": c for i, c in enumerate(grid)})
            candidates["vLLM default"] = vllm_default_config(M, plan.shape.E, plan.shape.dtype,
                                                             plan.shape.block_shape)
            if shipped is not None:
                candidates["shipped"] = shipped.entry_for(M, plan.shape.block_shape)["runs_as"]
            # One timing per distinct config (the tuned entry is often one of the others).
            distinct = {SearchSpace.key(c): c for c in candidates.values()}
            timed = dict(zip(distinct, retime(bench, list(distinct.values()), M, args.rounds)))
            row = {"M": M, "recorded_best_us": ranked[0]["us"], "configs": {
                name: {"config": c, **timed[SearchSpace.key(c)]} for name, c in candidates.items()}}
            grid_best = min(v["us"] for k, v in row["configs"].items()
                            if k.startswith("grid") and v.get("us"))
            row["tuned_over_grid_best"] = row["configs"]["tuned"]["us"] / grid_best
            rows.append(row)
            print(json.dumps({"M": M, "tuned/grid": round(row["tuned_over_grid_best"], 4),
                              **{k: v.get("us") for k, v in row["configs"].items()}}), flush=True)
    finally:
        bench.close()
    report = {"shape": args.shape, "tuned": Path(args.tuned).name, "shipped": args.shipped,
              "rounds": args.rounds, "environment": getattr(bench, "environment", {}), "rows": rows}
    (args.out / "compare.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / "compare.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    names = list(report["rows"][0]["configs"]) if report["rows"] else []
    lines = [f"Tuned `{report['tuned']}` vs the grid's best, re-timed interleaved "
             f"({report['rounds']} rounds, median us) on {report['environment'].get('device')}",
             "", "| M | " + " | ".join(names) + " | tuned / grid best |",
             "|---:|" + "---:|" * (len(names) + 1)]
    for row in report["rows"]:
        cells = [f"{row['configs'][n]['us']:.2f}" if row["configs"][n].get("us") else "failed"
                 for n in names]
        lines.append(f"| {row['M']} | " + " | ".join(cells)
                     + f" | {row['tuned_over_grid_best']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
