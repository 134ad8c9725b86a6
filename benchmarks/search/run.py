"""The search benchmark behind benchmarks/search/README.md (CPU only; about 50 minutes on 2 cores).

    PYTHONPATH=. python benchmarks/search/run.py [--tables tests/data/grids] [--repeats 20]
        [--workers 2] [--only main,loto,noise,pruning,stopping,neighbours,optuna_gp,shapes,shapes_cv]

`shapes` (leave one shape out) judges every table of --shape-tables (the qwen35 tables of vLLM's
kernel, the minimax and deepseek tables of ours) with the prior learned only from bundled sources
of other shapes or GPUs: autotune/search/prior.py drops those of the table's own GPU and shape.
`shapes_cv` puts the choice of settings inside the leave-one-shape-out loop: the held-out shape's
tables take no part in choosing, nor in the prior of the tables it is chosen on.

Every number comes from `autotune.evaluate.core.evaluate`: the real study code on the recorded tables.
Writes benchmarks/search/results/<part>.json (settings, summaries, one compact row per run) and
benchmarks/search/results/<part>.md (the tables the README quotes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import optuna

from autotune.evaluate.cli import load_settings
from autotune.evaluate.core import Run, evaluate
from autotune.evaluate.stats import _num, finite, summarize
from autotune.files.grid_table import expand_table_paths

OUT = Path(__file__).resolve().parent / "results"
MISS_COST = 128  # a miss counts as this many measurements in the selection score (2 x budget)

# name -> (sampler preset, overrides, evaluation options)
OFF = ["sampler.warm_start_default=false", "sampler.prior_trials=0", "sampler.neighbour_trials=0"]
DEFAULT_ONLY = ["sampler.prior_trials=0"]
MAIN = {
    "random (study, budget 64)": ("random", [], {}),
    "tpe, 10 startup (plain)": ("tpe", OFF + ["sampler.n_startup_trials=10"], {}),
    "tpe + vLLM default": ("tpe", DEFAULT_ONLY, {}),
    "tpe + default + 2 prior": ("tpe", ["sampler.prior_trials=2"], {}),
    "tpe + default + 8 prior (conf/sampler/tpe.yaml)": ("tpe", [], {}),
    "prior_gp, no prior, no default (cold)": ("prior_gp", OFF + ["sampler.prior_weight=0"], {}),
    "prior_gp + default, no prior": ("prior_gp", DEFAULT_ONLY + ["sampler.prior_weight=0"], {}),
    "prior_gp + default, prior as mean only": ("prior_gp", DEFAULT_ONLY, {}),
    "**prior_gp + default + 2 prior (the default)**": ("prior_gp", [], {}),
}
TPE = "tpe + default + 8 prior (conf/sampler/tpe.yaml)"
GP = "**prior_gp + default + 2 prior (the default)**"


def run_method(paths, preset: str, overrides: list[str], repeats: int, workers: int,
               **options: Any) -> dict[str, Any]:
    budget = options.pop("budget", 64)
    settings = load_settings(preset, options.pop("pruner", "none"), overrides, budget=budget,
                             **options)
    return evaluate(paths, settings, repeats, seed=0, workers=workers, random_repeats=1000)


def compact(result: dict[str, Any]) -> dict[str, Any]:
    """Settings and summaries, with one short row per run instead of the full trace."""
    rows = []
    for d in result["runs"]:
        r = Run(**d)
        rows.append({"table": r.table, "M": r.M, "seed": r.seed, "evals_1pct": r.evals_to(0.01),
                     "evals_2pct": r.evals_to(0.02), "regret16": round(r.regret_at(16), 5),
                     "regret32": round(r.regret_at(32), 5), "regret64": round(r.regret_at(64), 5),
                     "measurements": len(r.trace), "gpu_ms": r.gpu_ms, "pruned": r.pruned,
                     "stop": r.stop, "first_sources": r.sources[:8]})
    return {k: v for k, v in result.items() if k != "runs"} | {"runs": rows}


def row(name: str, s: dict[str, Any], extra: str = "") -> str:
    return (f"| {name} | {_num(s['median_evals_to_1pct'])} | {_num(s['p90_evals_to_1pct'])} | "
            f"{s['miss_rate_1pct']:.2f} | {_num(s['median_evals_to_2pct'])} | "
            f"{_num(s['p90_evals_to_2pct'])} | {s['mean_regret_at_16'] * 100:.2f} | "
            f"{s['mean_regret_at_32'] * 100:.2f} | {s['mean_regret_at_64'] * 100:.2f} |{extra}")


HEAD = ("| method | median to 1% | p90 to 1% | miss | median to 2% | p90 to 2% | regret@16 % "
        "| @32 % | @64 % |")
SEP = "|---|---|---|---|---|---|---|---|---|"


def per_table_lines(result: dict[str, Any]) -> list[str]:
    cells = []
    for t in result["per_table"].values():
        cells.append(f"M={t['M']}: {_num(t['median_evals_to_1pct'])} / "
                     f"{_num(t['p90_evals_to_1pct'])} / {t['miss_rate_1pct']:.2f}")
    return cells


def score(runs: list[Run]) -> tuple[float, float]:
    """Selection score on training tables: mean measurements to 1% (a miss = MISS_COST)."""
    n = [r.evals_to(0.01) for r in runs]
    return (statistics.fmean(MISS_COST if v is None else v for v in n),
            statistics.fmean(r.regret_at(16) for r in runs))


# Leave one shape out: the default and the alternatives asked about (benchmarks/search/README.md).
SHAPES = {
    "**prior_gp (default: prior weight 0.5, a table counts 16 file entries)**": ("prior_gp", [], {}),
    "prior_gp, the default until 2026-12-02 (prior weight 1.5, a table counts 1 entry)": (
        "prior_gp", ["sampler.prior_weight=1.5", "sampler.prior_table_weight=1"], {}),
    "prior_gp, a table counts 1 entry": ("prior_gp", ["sampler.prior_table_weight=1"], {}),
    "prior_gp, a table counts 64 entries": ("prior_gp", ["sampler.prior_table_weight=64"], {}),
    "prior_gp, prior weight 1.5": ("prior_gp", ["sampler.prior_weight=1.5"], {}),
    "prior_gp, prior from vLLM's shipped files only": ("prior_gp",
                                                       ["sampler.prior_source=shipped"], {}),
    "prior_gp, prior from recorded tables only": ("prior_gp", ["sampler.prior_source=tables"], {}),
    "prior_gp, step correlation 0.5": ("prior_gp", ["sampler.step_correlation=0.5"], {}),
    "prior_gp, 4 prior trials": ("prior_gp", ["sampler.prior_trials=4"], {}),
    "prior_gp, 3 random trials after the warm starts": ("prior_gp",
                                                        ["sampler.n_startup_trials=6"], {}),
    "prior_gp, no prior (vLLM's default, then the GP)": (
        "prior_gp", ["sampler.prior_trials=0", "sampler.prior_weight=0"], {}),
    "tpe (tpe.yaml)": ("tpe", [], {}),
    "prior_gp (default), neighbours below": ("prior_gp", [], {"neighbours": "below"}),
    "prior_gp (default), neighbours both": ("prior_gp", [], {"neighbours": "both"}),
}
SHAPE_NAMES = {"N512_K2048": "qwen35", "N384_K3072": "minimax", "N256_K7168": "deepseek"}


def shape_name(table: str) -> str:
    return next((name for key, name in SHAPE_NAMES.items() if key in table), table)


def shapes_cv_grid() -> dict[str, list[str]]:
    """The prior_gp settings the leave-one-shape-out selection chooses from."""
    grid = {}
    for weight in (0.5, 1.0, 1.5):
        for rho in (0.3, 0.5, 0.7):
            for prior in (2, 4):
                base = [f"sampler.prior_weight={weight}", f"sampler.step_correlation={rho}",
                        f"sampler.prior_trials={prior}"]
                for table in (1, 16, 64):
                    grid[f"weight={weight} rho={rho} prior={prior} table={table}"] = base + [
                        f"sampler.prior_table_weight={table}"]
                grid[f"weight={weight} rho={rho} prior={prior} tables only"] = base + [
                    "sampler.prior_source=tables"]
    return grid


def prior_without(shape: str) -> list[str]:
    """sampler.prior_files: the bundled vLLM files and every bundled table but `shape`'s."""
    from autotune.files.grid_table import bundled_tables_dir
    from autotune.search.prior import bundled_files_dir

    tables = [str(p) for p in sorted(bundled_tables_dir().glob("*.json"))
              if shape_name(p.name) != shape]
    return ["sampler.prior_files=[" + ",".join(f'"{p}"' for p in [str(bundled_files_dir())]
                                               + tables) + "]"]


def shape_tables(patterns: list[str]) -> list[Path]:
    """The tables for `shapes`: one pass per bucket (a second pass `_passb` is left out)."""
    return [p for p in expand_table_paths(patterns) if not p.name.endswith("_passb.json")]


def loto_grid() -> dict[str, tuple[str, list[str]]]:
    grid = {}
    for prior in (0, 2, 4, 8):
        for startup in (0, 5, 10):
            grid[f"tpe startup={startup} prior={prior}"] = (
                "tpe", [f"sampler.n_startup_trials={startup}", f"sampler.prior_trials={prior}"])
        for weight in (0, 0.5, 1):
            for rho in (0.3, 0.5, 0.7):
                grid[f"prior_gp rho={rho} weight={weight} prior={prior}"] = (
                    "prior_gp", [f"sampler.step_correlation={rho}",
                                 f"sampler.prior_weight={weight}", f"sampler.prior_trials={prior}"])
    return grid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", nargs="+", default=["tests/data/grids"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shape-tables", nargs="+", default=["tests/data/grids", "benchmarks/tables"])
    ap.add_argument("--only", default="main,loto,priors,neighbours,noise,pruning,stopping,"
                                      "optuna_gp,shapes,shapes_cv")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    paths = expand_table_paths(args.tables)
    parts = set(args.only.split(","))
    OUT.mkdir(parents=True, exist_ok=True)
    md: list[str] = []

    def save(part: str, data: Any) -> None:
        (OUT / f"{part}.json").write_text(json.dumps(finite(data), indent=1) + "\n")
        (OUT / f"{part}.md").write_text("\n".join(md) + "\n")
        md.clear()

    def table(title: str, results: dict[str, dict], extra_head: str = "", extra=None) -> None:
        md.extend([f"### {title}", "", HEAD + extra_head, SEP + "---|" * extra_head.count("|")])
        for name, res in results.items():
            md.append(row(name, res["overall"], extra(res) if extra else ""))
        md.append("")
        md.append("Per table (median / p90 / miss rate, measurements to 1%):")
        md.append("")
        for name, res in results.items():
            md.append(f"- {name}: " + "; ".join(per_table_lines(res)))
        md.append("")
        print("\n".join(md[-(len(results) * 2 + 6):]), flush=True)

    if "main" in parts:
        results = {name: run_method(paths, p, o, args.repeats, args.workers, **opt)
                   for name, (p, o, opt) in MAIN.items()}
        any_result = next(iter(results.values()))
        rnd = any_result["overall"]
        md.append(f"Random search (1000 random orders of the space per table, no budget): median "
                  f"{_num(rnd['random_median_evals_to_1pct'])}, p90 "
                  f"{_num(rnd['random_p90_evals_to_1pct'])} measurements to 1%; per table: "
                  + "; ".join(f"M={t['M']}: {_num(t['random_median_evals_to_1pct'])} / "
                              f"{_num(t['random_p90_evals_to_1pct'])}"
                              for t in any_result["per_table"].values()) + "\n")
        table(f"Single bucket, {args.repeats} seeds x {len(paths)} tables, budget 64", results,
              " sec |", lambda r: f" {r['seconds']} |")
        save("main", {k: compact(v) for k, v in results.items()})

    if "loto" in parts:
        grid = loto_grid()
        full = {}
        for name, (p, o) in grid.items():
            full[name] = run_method(paths, p, o, args.repeats, args.workers)
            print(f"loto grid {name}: {full[name]['overall']['median_evals_to_1pct']} / "
                  f"{full[name]['overall']['p90_evals_to_1pct']}", flush=True)
        runs = {name: [Run(**d) for d in res["runs"]] for name, res in full.items()}
        tables = sorted({r.table for rs in runs.values() for r in rs},
                        key=lambda t: next(r.M for r in runs[next(iter(runs))] if r.table == t))
        held_runs, folds = [], []
        for held in tables:
            train = {name: score([r for r in rs if r.table != held]) for name, rs in runs.items()}
            chosen = min(train, key=lambda n: train[n])  # dict order breaks ties
            test = [r for r in runs[chosen] if r.table == held]
            held_runs.extend(test)
            s = summarize(test)
            folds.append({"held_out": held, "chosen": chosen, "train_score": train[chosen],
                          "held_out_summary": s})
        pooled = summarize(held_runs)
        all_tables = {name: summarize(rs) for name, rs in runs.items()}
        ranked = sorted(all_tables, key=lambda n: score(runs[n]))
        md.extend(["### Leave one table out", "",
                   "For each table: the setting with the best score on the other four (mean "
                   f"measurements to 1%, a miss = {MISS_COST}; grid of {len(grid)} settings), "
                   "judged on the held-out table.", "",
                   "| held-out table | chosen on the other four | median to 1% | p90 | miss |",
                   "|---|---|---|---|---|"])
        for f in folds:
            s = f["held_out_summary"]
            md.append(f"| {f['held_out']} | {f['chosen']} | {_num(s['median_evals_to_1pct'])} | "
                      f"{_num(s['p90_evals_to_1pct'])} | {s['miss_rate_1pct']:.2f} |")
        md.extend(["", HEAD, SEP, row("**held-out pooled**", pooled), ""])
        md.extend(["Best and worst settings of the grid on all five tables (score = mean "
                   "measurements to 1%, miss = 128):", "", HEAD + " score |", SEP + "---|"])
        for name in ranked[:8] + ["..."] + ranked[-4:]:
            if name == "...":
                md.append("| ... |" + " |" * 9)
                continue
            md.append(row(name, all_tables[name], f" {score(runs[name])[0]:.2f} |"))
        md.append("")
        print("\n".join(md), flush=True)
        save("loto", {"grid": {k: list(v) for k, v in grid.items()}, "folds": folds,
                      "pooled": pooled, "all_tables": all_tables})

    if "priors" in parts:
        shipped = "autotune/vllm_configs/"
        sources = {
            "every shipped file but the table's own (the default)": [],
            "other shapes only (no E=256,N=512 file of any GPU)": [
                f'sampler.prior_files=["{shipped}E=128*","{shipped}E=64*",'
                f'"{shipped}E=256,N=[123]*"]'],
            "other GPUs only (H100 and RTX PRO 6000 files)": [
                f'sampler.prior_files=["{shipped}*H100*","{shipped}*RTX*"]'],
            "no prior (vLLM's default, then the sampler)": ["sampler.prior_trials=0",
                                                            "sampler.prior_weight=0"],
        }
        results = {f"{preset}, {name}": run_method(paths, preset, o, args.repeats, args.workers)
                   for preset in ("prior_gp", "tpe") for name, o in sources.items()}
        table("Where the prior is learned from (prior_gp and tpe presets otherwise)", results)
        save("priors", {k: compact(v) for k, v in results.items()})

    if "prior_weights" in parts:
        # How sensitive the prior's ranking is to its weights: the rank of the first config
        # within 1% of each table's best (1 = the prior's favourite), vLLM's default not counted.
        from dataclasses import replace

        from autotune.evaluate.core import load_groups
        from autotune.problem.space import SearchSpace
        from autotune.search.prior import PriorWeights, load_shipped_files, rank_configs

        files = load_shipped_files(None)
        base = PriorWeights()
        variants = {"as shipped": base}
        for key, values in (("step", (0.2, 0.5)), ("group_step", (0.5, 1.0)),
                            ("m_octaves", (0.5, 2.0)), ("other_quant", (0.01, 0.3)),
                            ("other_device", (0.2, 1.0))):
            for v in values:
                variants[f"{key}={v}"] = replace(base, **{key: v})
        md.extend(["### Sensitivity of the prior ranking to its weights", "",
                   "Rank of the first config within 1% of the table's best in the prior's "
                   "ranking of the whole space (1 = its favourite; vLLM's default config is "
                   "ranked like any other). Shipped weights: " + str(base), "",
                   "| weights | " + " | ".join(f"M={M}" for g in load_groups(paths, "vllm", 0)
                                                for M in sorted(g.tables)) + " |",
                   "|---|" + "---|" * len(paths)])
        rows = {}
        for name, w in variants.items():
            ranks = []
            for g in load_groups(paths, "vllm", 0):
                for M, t in sorted(g.tables.items()):
                    best = t.best()[1]
                    ranked = rank_configs(g.space, files, g.device_name, M, w)
                    ranks.append(next(i for i, c in enumerate(ranked, 1)
                                      if t.timings[SearchSpace.key(c)].ok
                                      and t.timings[SearchSpace.key(c)].us <= best * 1.01))
            rows[name] = ranks
            md.append(f"| {name} | " + " | ".join(map(str, ranks)) + " |")
        md.append("")
        print("\n".join(md), flush=True)
        save("prior_weights", rows)

    if "neighbours" in parts:
        results = {}
        for mode in ("below", "both"):
            for name, preset in (("tpe (tpe.yaml)", "tpe"), ("prior_gp (default)", "prior_gp")):
                results[f"{name}, neighbours {mode}"] = run_method(
                    paths, preset, [], args.repeats, args.workers, neighbours=mode)
        table("Warm starts from neighbouring buckets of the same shape (2 best of each)",
              results)
        save("neighbours", {k: compact(v) for k, v in results.items()})

    if "noise" in parts:
        results = {}
        for cv in (0.01, 0.02):
            for name, (p, o, _) in (("tpe + vLLM default", MAIN["tpe + vLLM default"]),
                                    ("tpe (tpe.yaml)", MAIN[TPE]),
                                    ("prior_gp (default)", MAIN[GP])):
                results[f"{name}, noise cv {cv}"] = run_method(paths, p, o, args.repeats,
                                                               args.workers, noise_cv=cv)
        table("Emulated measurement noise (each answer = recorded time x (1 + cv z)); judged on "
              "the recorded time of the config the study holds best", results)
        save("noise", {k: compact(v) for k, v in results.items()})

    if "pruning" in parts:
        results = {}
        for cv in (0.0, 0.01):
            for margin in (None, 0.05, 0.1, 0.2, 0.3):
                opts: dict[str, Any] = {"noise_cv": cv, "stop_at_optimum": False}
                o = []
                if margin is not None:
                    opts["pruner"] = "screen"
                    o = [f"pruner.margin={margin}"]
                label = "no pruning" if margin is None else f"screen, margin {margin}"
                results[f"prior_gp, {label}, noise {cv}"] = run_method(
                    paths, "prior_gp", o, args.repeats, args.workers, budget=32, **opts)
        table("First-look pruning, prior_gp, budget 32 (full runs); GPU time of timing under the "
              "cost model of autotune/evaluate/", results, " GPU ms / bucket | pruned |",
              lambda r: f" {r['overall']['mean_gpu_ms']:.0f} | {r['overall']['mean_pruned']:.1f} |")
        save("pruning", {k: compact(v) for k, v in results.items()})

    if "stopping" in parts:
        results = {}
        for cv in (0.0, 0.01):
            for trials, patience in ((8, None), (12, None), (16, None), (24, None), (32, None),
                                     (32, 8), (32, 12), (48, 12), (48, 16), (64, 16)):
                results[f"trials={trials} patience={patience or '-'} noise {cv}"] = run_method(
                    paths, "prior_gp", [], args.repeats, args.workers, budget=trials,
                    patience=patience, noise_cv=cv, stop_at_optimum=False)
        table("Stopping: budget (trials) and patience (measurements without a 0.5% gain), "
              "prior_gp, full runs", results, " measurements spent |",
              lambda r: f" {r['overall']['mean_measurements']:.1f} |")
        save("stopping", {k: compact(v) for k, v in results.items()})

    if "optuna_gp" in parts:
        results = {"optuna GPSampler + default + 2 prior, 0 startup (budget 32, 4 seeds)":
                   run_method(paths, "gp", [], 4, args.workers, budget=32)}
        table("Optuna's GPSampler (slow on CPU: few seeds, budget 32)", results, " sec |",
              lambda r: f" {r['seconds']} |")
        save("optuna_gp", {k: compact(v) for k, v in results.items()})


    if "shapes" in parts:
        spaths = shape_tables(args.shape_tables)
        results = {name: run_method(spaths, p, o, args.repeats, args.workers, **opt)
                   for name, (p, o, opt) in SHAPES.items()}
        groups = {name: (lambda n, name=name: shape_name(n) == name)
                  for name in SHAPE_NAMES.values()} | {"all": lambda n: True}
        md.extend(["### Leave one shape out", "",
                   "Prior from bundled sources of other shapes/GPUs only."])
        for within in ("1", "2"):
            md.extend(["", f"Pooled (median / p90 / miss rate, measurements to {within}%):", "",
                       "| method | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)])
            for name, res in results.items():
                runs = [Run(**d) for d in res["runs"]]
                cells = []
                for keep in groups.values():
                    s = summarize([r for r in runs if keep(r.table)])
                    cells.append(f"{_num(s[f'median_evals_to_{within}pct'])} / "
                                 f"{_num(s[f'p90_evals_to_{within}pct'])} / "
                                 f"{s[f'miss_rate_{within}pct']:.2f}")
                md.append(f"| {name} | " + " | ".join(cells) + " |")
        md.extend(["", "Per table (median / p90 / miss rate, measurements to 1%):", ""])
        for name, res in results.items():
            md.append(f"- {name}: " + "; ".join(
                f"{shape_name(t)} {c}" for t, c in zip(res["per_table"], per_table_lines(res))))
        md.append("")
        print("\n".join(md), flush=True)
        save("shapes", {k: compact(v) for k, v in results.items()})

    if "shapes_cv" in parts:
        # Honest held-out numbers for the selection itself: for each shape, choose the setting
        # with the best score on the other shapes' tables (prior without the held-out shape's
        # tables, not even as a source for the others), then judge it on the held-out shape.
        # Deterministic sampler: 3 repeats.
        spaths = shape_tables(args.shape_tables)
        grid = shapes_cv_grid()
        folds, held_runs = [], []
        for shape in SHAPE_NAMES.values():
            train = [p for p in spaths if shape_name(p.name) != shape]
            test = [p for p in spaths if shape_name(p.name) == shape]
            scores = {}
            for name, o in grid.items():
                res = run_method(train, "prior_gp", o + prior_without(shape), 3, args.workers)
                scores[name] = score([Run(**d) for d in res["runs"]])
            chosen = min(scores, key=lambda n: scores[n])  # dict order breaks ties
            res = run_method(test, "prior_gp", grid[chosen] + prior_without(shape), 3,
                             args.workers)
            runs = [Run(**d) for d in res["runs"]]
            held_runs.extend(runs)
            folds.append({"held_out": shape, "chosen": chosen, "train_score": scores[chosen],
                          "held_out_summary": summarize(runs),
                          "per_table": {r.table: r.evals_to(0.01) for r in runs}})
            print(f"held out {shape}: chose {chosen} ({scores[chosen][0]:.2f})", flush=True)
        pooled = summarize(held_runs)
        md.extend(["### Leave one shape out, the selection included", "",
                   f"For each shape: the prior_gp setting (grid of {len(grid)}: prior weight x "
                   "step correlation x prior trials x table weight or tables-only prior) with "
                   f"the best score on the other shapes' tables (mean measurements to 1%, a miss "
                   f"= {MISS_COST}), the prior built without the held-out shape's tables; judged "
                   "on the held-out shape.", "",
                   "| held-out shape | chosen on the others | train score | median to 1% | p90 "
                   "| miss | per table |", "|---|---|---|---|---|---|---|"])
        for f in folds:
            s = f["held_out_summary"]
            md.append(f"| {f['held_out']} | {f['chosen']} | {f['train_score'][0]:.2f} | "
                      f"{_num(s['median_evals_to_1pct'])} | {_num(s['p90_evals_to_1pct'])} | "
                      f"{s['miss_rate_1pct']:.2f} | "
                      + ", ".join(f"{t.split('_fp8block_')[-1][:-5]}: {n}"
                                  for t, n in f["per_table"].items()) + " |")
        md.extend(["", HEAD, SEP, row("**held-out pooled**", pooled), ""])
        print("\n".join(md), flush=True)
        save("shapes_cv", {"grid": grid, "folds": folds, "pooled": pooled})


if __name__ == "__main__":
    sys.exit(main())
