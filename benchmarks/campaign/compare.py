"""Tuned files against each other, vLLM's shipped file, vLLM's default and the exhaustive grid,
re-timed interleaved in one run per bucket (GPU).

At every bucket (the first tuned file's keys, or --buckets): the entry vLLM would take from each
tuned file, the grid's best few configs where a recorded table of that M is given, vLLM's default
config and the entry vLLM would take from a shipped file, all on our kernel in the variant vLLM
runs, timed in `--rounds` interleaved rounds (A B C, B C A, ...; median). Timing settings come
from the overrides (e.g. benchmark.l2=layers). Writes JSON and a markdown table.

    python benchmarks/campaign/compare.py --shape qwen3_30b_a3b_tp1 \
        --tuned layers=benchmarks/x/E=...json hot=benchmarks/y/E=...json \
        --tables 'benchmarks/tables/..._M*.json' --shipped 'vllm_configs_all/E=...json' \
        --out benchmarks/x/compare benchmark.l2=layers

Overrides that follow --tuned need `--` before them (--tuned takes every NAME=FILE after it).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from autotune.bench import open_benchmarker  # noqa: E402
from autotune.consolidate.retime import retime  # noqa: E402
from autotune.files.vllm import read_entries  # noqa: E402
from autotune.plan import build_plan  # noqa: E402
from autotune.problem import vllm_rules  # noqa: E402
from autotune.problem.space import SearchSpace  # noqa: E402
from benchmarks.benchmarker.campaign import compose  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", required=True)
    ap.add_argument("--tuned", required=True, nargs="+", metavar="NAME=FILE",
                    help="tuned vLLM config files, each with a name for the table")
    ap.add_argument("--tables", nargs="*", default=[],
                    help="moe-grid-table/1 files (or globs) of the shape, one per M")
    ap.add_argument("--shipped", help="a vLLM config file whose entries join the comparison")
    ap.add_argument("--buckets", help="comma-separated batch sizes (default: the first file's)")
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
    shape = plan.shape
    tuned = {name: read_entries(Path(path)) for name, path in
             (item.split("=", 1) for item in args.tuned)}
    shipped = read_entries(Path(args.shipped)) if args.shipped else None
    tables = {t["M"]: t for t in (json.loads(Path(p).read_text())
                                  for g in args.tables for p in glob.glob(g))}
    buckets = ([int(m) for m in args.buckets.split(",")] if args.buckets
               else sorted(next(iter(tuned.values()))))
    bench = open_benchmarker(plan)
    rows = []
    try:
        for M in buckets:
            candidates = {name: vllm_rules.nearest_entry(entries, M)
                          for name, entries in tuned.items()}
            if M in tables:
                ranked = sorted((r for r in tables[M]["results"] if r.get("us")),
                                key=lambda r: r["us"])
                candidates.update({f"grid #{i + 1}": {k: r["config"][k] for k in plan.space.params}
                                   for i, r in enumerate(ranked[:args.top])})
            candidates["vLLM default"] = vllm_rules.default_config(M, shape.E, shape.dtype,
                                                                   shape.block_shape)
            if shipped is not None:
                candidates["shipped"] = vllm_rules.runs_as(vllm_rules.nearest_entry(shipped, M),
                                                           shape.block_shape)
            # One timing per distinct config (tuned entries often coincide).
            distinct = {SearchSpace.key(c): c for c in candidates.values()}
            timed = dict(zip(distinct, retime(bench, list(distinct.values()), M, args.rounds)))
            row = {"M": M, "configs": {name: {"config": c, **timed[SearchSpace.key(c)]}
                                       for name, c in candidates.items()}}
            row["ratios"] = ratios(row["configs"], list(tuned))
            rows.append(row)
            print(json.dumps({"M": M, **{k: round(v, 4) for k, v in row["ratios"].items()},
                              **{k: v.get("us") for k, v in row["configs"].items()}}), flush=True)
    finally:
        bench.close()
    report = {"shape": args.shape, "tuned": args.tuned, "shipped": args.shipped,
              "tables": sorted(tables), "rounds": args.rounds, "overrides": args.overrides,
              "identity": plan.benchmark_identity,
              "environment": getattr(bench, "environment", {}), "rows": rows,
              "summary": summary(rows)}
    (args.out / "compare.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / "compare.md").write_text(markdown(report))
    print(markdown(report))


def ratios(configs: dict, tuned: list[str]) -> dict[str, float]:
    """Each tuned entry's time over the grid's best, the shipped entry and the default, and the
    first tuned file over the others (>1: slower)."""
    us = {name: c.get("us") for name, c in configs.items()}
    grid = [v for k, v in us.items() if k.startswith("grid") and v]
    out = {}
    for name in tuned:
        if not us[name]:
            continue
        if grid:
            out[f"{name}/grid best"] = us[name] / min(grid)
        for other in ["shipped", "vLLM default", *tuned[1:]]:
            if other != name and us.get(other):
                out[f"{name}/{other}"] = us[name] / us[other]
    return out


def summary(rows: list[dict]) -> dict[str, dict]:
    """Per ratio: geometric mean, min and max over the buckets."""
    names = sorted({k for r in rows for k in r["ratios"]})
    out = {}
    for name in names:
        values = [r["ratios"][name] for r in rows if name in r["ratios"]]
        out[name] = {"geomean": math.exp(sum(map(math.log, values)) / len(values)),
                     "min": min(values), "max": max(values), "buckets": len(values)}
    return out


def markdown(report: dict) -> str:
    rows = report["rows"]
    names = list(dict.fromkeys(n for r in rows for n in r["configs"]))
    ratio_names = list(dict.fromkeys(n for r in rows for n in r["ratios"]))
    env = report["environment"]
    lines = [f"Re-timed interleaved ({report['rounds']} rounds, median us per MoE call) on "
             f"{env.get('device')} (torch {env.get('torch')}, Triton {env.get('triton')}); "
             f"timing {report['identity']}", "",
             "| M | " + " | ".join(names) + " | " + " | ".join(ratio_names) + " |",
             "|---:|" + "---:|" * (len(names) + len(ratio_names))]
    for row in rows:
        cells = [(f"{row['configs'][n]['us']:.2f}" if row["configs"][n].get("us") else "failed")
                 if n in row["configs"] else "" for n in names]
        cells += [f"{row['ratios'][n]:.3f}" if n in row["ratios"] else "" for n in ratio_names]
        lines.append(f"| {row['M']} | " + " | ".join(cells) + " |")
    lines += ["", "| ratio | geometric mean | min | max | buckets |", "|---|---:|---:|---:|---:|"]
    for name, s in report["summary"].items():
        lines.append(f"| {name} | {s['geomean']:.3f} | {s['min']:.3f} | {s['max']:.3f} | "
                     f"{s['buckets']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
