"""`python -m autotune.evaluate TABLES...`: how many measurements the search needs, offline.

Replays recorded `moe-grid-table/1` tables through the real study code (BucketTuner with the
configured sampler, warm starts and pruner, on the ReplayBenchmarker; in-memory Optuna storage),
many repeats with different seeds. Per table and repeat it follows the config the study holds
best after each measurement and judges it on the table's recorded time:
- measurements until that config is within 1% (and 2%) of the table's best; a miss when the run
  ends (budget, patience) before;
- regret (recorded time / table's best - 1) after 16, 32 and 64 measurements;
- GPU time spent timing, under a cost model (FULL_CALLS / LOOK_CALLS kernel calls per
  measurement / first look), to show what pruning saves.
Random search is the baseline: a random order of the constrained space, without replacement (what
random sampling does once duplicates are answered from the study), measured to the end.

Warm starts from neighbouring buckets (`--neighbours`) come from the tables of the same GPU and
shape given: `below` tunes the tables in ascending M as a run does, each bucket warm-started from
those before it; `both` first tunes every table alone, then each again warm-started from the
tuned tables on both sides. The prior never reads a shipped file or recorded table of a table's own
GPU and shape (autotune/priors.py), so every table is judged leave-one-shape-out.

The last line is machine-readable:
`median_evals_to_1pct=NN p90_evals_to_1pct=NN miss_rate=F ... tables=N repeats=R`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import optuna
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from autotune.bench.replay import GridTable, ReplayBenchmarker, expand_table_paths
from autotune.config import (
    PrunerConfig,
    SamplerConfig,
    SearchSpaceConfig,
    config_root,
    search_space_root,
)
from autotune.errors import UserError
from autotune.formats import device_token
from autotune.output_paths import check_file
from autotune.priors import PriorSource, PriorWeights, bucket_prior, load_prior_sources
from autotune.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler
from autotune.shape import MoEShape
from autotune.space import SearchSpace
from autotune.study import BucketTuner, Record, best_record
from autotune.warm_starts import first_trials

THRESHOLDS = (0.01, 0.02)
REGRET_AT = (16, 32, 64)
# GPU cost model, in kernel calls per config (CUDA graph of 10 calls, as vLLM's tuner times):
# a measurement = eager warm-up + capture + 5 warm-up replays + 20 timed replays;
# a first look = eager warm-up + capture + 1 warm-up replay + 3 timed replays.
FULL_CALLS = 10 * (1 + 1 + 5 + 20)
LOOK_CALLS = 10 * (1 + 1 + 1 + 3)


@dataclass
class Settings:
    """Everything that defines one evaluated method (it goes into the JSON output)."""

    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    budget: int = 64
    patience: Optional[int] = None
    neighbours: str = "none"  # none | below | both
    noise_cv: float = 0.0
    search_space: str = "vllm"
    # Without noise nothing changes once a run holds the table's best, so it may stop there (speed
    # only; off to count the measurements a real run spends before its budget or patience ends).
    stop_at_optimum: bool = True


@dataclass
class Run:
    """One repeat on one table."""

    table: str
    M: int
    seed: int
    trace: list[float]  # recorded time of the study's best config after each measurement
    sources: list[str]  # where each measured config came from (prior, sampler, ...)
    pruned: int
    gpu_ms: float
    stop: str
    best_us: float  # the table's best

    def evals_to(self, within: float) -> Optional[int]:
        for n, us in enumerate(self.trace, 1):
            if us <= self.best_us * (1 + within):
                return n
        return None

    def regret_at(self, n: int) -> float:
        if not self.trace:
            return math.inf
        return self.trace[min(n, len(self.trace)) - 1] / self.best_us - 1


# -- one repeat through the real study code --------------------------------------------------------
@dataclass
class Group:
    """Tables of one GPU and shape, with their search space and benchmarker."""

    tables: dict[int, GridTable]
    space: SearchSpace
    bench: ReplayBenchmarker
    device_name: str


def load_groups(paths: Sequence[Path], space_name: str, noise_cv: float) -> list[Group]:
    tables = [GridTable.load(p) for p in paths]
    space_cfg = _search_space_config(space_name)
    keyed: dict[tuple, list[GridTable]] = {}
    for t in tables:
        s = t.shape
        block = tuple(s["block_shape"]) if s.get("block_shape") else None
        key = (s["E"], s["N"], s["K"], s["topk"], s["dtype"], block, device_token(t.device_name))
        keyed.setdefault(key, []).append(t)
    groups = []
    for ts in keyed.values():
        s = ts[0].shape
        block = tuple(s["block_shape"]) if s.get("block_shape") else None
        shape = MoEShape(E=s["E"], N=s["N"], K=s["K"], topk=s["topk"], dtype=s["dtype"],
                         block_shape=block, model=s.get("model", ""))
        device = ts[0].device_name
        space = SearchSpace.from_config(space_cfg, shape, _shared_memory(device))
        bench = ReplayBenchmarker([str(t.path) for t in ts], shape, device, noise_cv=noise_cv)
        groups.append(Group(bench.tables, space, bench, device))
    return groups


def run_group(group: Group, settings: Settings, seed: int,
              prior_files: Sequence[PriorSource]) -> list[Run]:
    """One repeat over a group's tables, as `settings.neighbours` says."""
    Ms = sorted(group.tables)
    if settings.neighbours == "none":
        return [_run_table(group, M, settings, seed, {}, prior_files)[0] for M in Ms]
    if settings.neighbours == "below":
        tuned: dict[int, list[Record]] = {}
        runs = []
        for M in Ms:
            run, records = _run_table(group, M, settings, seed, tuned, prior_files)
            tuned[M] = records
            runs.append(run)
        return runs
    alone = {M: _run_table(group, M, settings, seed, {}, prior_files, full=True)[1] for M in Ms}
    return [_run_table(group, M, settings, seed + 7919, {m: r for m, r in alone.items() if m != M},
                       prior_files)[0] for M in Ms]


def _run_table(group: Group, M: int, settings: Settings, seed: int,
               tuned: dict[int, list[Record]], prior_files: Sequence[PriorSource],
               full: bool = False) -> tuple[Run, list[Record]]:
    table = group.tables[M]
    best_us = table.best()[1]
    bench = group.bench
    bench.reseed(seed * 1_000_003 + M)
    prior = None
    if settings.sampler.name == "prior_gp":
        prior = bucket_prior(group.space, group.device_name, M, files=prior_files,
                             weights=PriorWeights(table=settings.sampler.prior_table_weight))
    sampler = make_sampler(settings.sampler, seed=seed, space=group.space, prior=prior)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction="minimize",
                                sampler=sampler, pruner=make_pruner(settings.pruner))

    def true_us(records: list[Record]) -> float:
        held = best_record(records)
        return math.inf if held is None else bench.recorded(held.config, M).us  # type: ignore

    def at_optimum(records: list[Record]) -> bool:
        return (settings.stop_at_optimum and not full and settings.noise_cv == 0
                and true_us(records) <= best_us)

    tuner = BucketTuner(study=study, space=group.space, bench=bench, M=M, budget=settings.budget,
                        patience=settings.patience, stop_when=at_optimum,
                        lookahead=settings.sampler.lookahead)
    warm = first_trials(group.space, group.device_name, M, settings.sampler, tuned, prior_files)
    outcome = tuner.run(warm_starts=warm)
    trace, gpu_ms, held = [], 0.0, None
    looked = settings.pruner.name != "none"
    for r in outcome.records:
        if r.candidate and (held is None or r.us < held.us):  # type: ignore[operator]
            held = r
        trace.append(math.inf if held is None else bench.recorded(held.config, M).us)
        recorded = bench.recorded(r.config, M)
        if recorded.ok:
            calls = LOOK_CALLS * looked + FULL_CALLS * (not r.pruned)
            gpu_ms += calls * recorded.us / 1000  # type: ignore[operator]
    run = Run(table=table.path.name, M=M, seed=seed, trace=trace,
              sources=[r.source for r in outcome.records], pruned=outcome.pruned,
              gpu_ms=round(gpu_ms, 3), stop=outcome.stop_reason, best_us=best_us)
    return run, outcome.records


def random_search(group: Group, M: int, repeats: int, seed: int) -> list[Optional[int]]:
    """Measurements random search needs to reach within 1% (a random order of the space)."""
    table = group.tables[M]
    best_us = table.best()[1]
    times = [table.timings.get(SearchSpace.key(c)) for c in group.space.configs()]
    good = [m is not None and m.ok and m.us <= best_us * 1.01 for m in times]  # type: ignore
    rng = random.Random(seed)
    out = []
    for _ in range(repeats):
        order = list(range(len(good)))
        rng.shuffle(order)
        out.append(next((n for n, i in enumerate(order, 1) if good[i]), None))
    return out


# -- statistics ------------------------------------------------------------------------------------
def percentile(values: Sequence[Optional[float]], q: float) -> float:
    """Linear-interpolated percentile; None (a miss) counts as infinitely many measurements."""
    xs = sorted(math.inf if v is None else float(v) for v in values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    if xs[hi] == math.inf and pos > lo or xs[lo] == math.inf:
        return math.inf
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(runs: Sequence[Run]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": len(runs)}
    for within in THRESHOLDS:
        n = [r.evals_to(within) for r in runs]
        tag = f"{round(within * 100)}pct"
        out[f"median_evals_to_{tag}"] = percentile(n, 50)
        out[f"p90_evals_to_{tag}"] = percentile(n, 90)
        out[f"miss_rate_{tag}"] = sum(v is None for v in n) / len(n)
    for k in REGRET_AT:
        out[f"mean_regret_at_{k}"] = statistics.fmean(r.regret_at(k) for r in runs)
    out["mean_measurements"] = statistics.fmean(len(r.trace) for r in runs)
    out["mean_gpu_ms"] = statistics.fmean(r.gpu_ms for r in runs)
    out["mean_pruned"] = statistics.fmean(r.pruned for r in runs)
    return out


# -- the whole evaluation --------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(paths: list[str], settings: Settings, prior_files: Optional[list[str]]) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _WORKER["groups"] = load_groups([Path(p) for p in paths], settings.search_space,
                                    settings.noise_cv)
    _WORKER["settings"] = settings
    _WORKER["prior_files"] = load_prior_sources(prior_files, settings.sampler.prior_source)


def _work(job: tuple[int, int]) -> list[Run]:
    gi, seed = job
    return run_group(_WORKER["groups"][gi], _WORKER["settings"], seed, _WORKER["prior_files"])


def evaluate(paths: Sequence[Path], settings: Settings, repeats: int, seed: int = 0,
             workers: int = 1, random_repeats: int = 1000) -> dict[str, Any]:
    """Run the evaluation; returns the per-run results, per-table and overall summaries."""
    prior = settings.sampler.prior_files
    args = ([str(p) for p in paths], settings, prior)
    _init_worker(*args)  # validates everything here, before any worker starts
    groups = _WORKER["groups"]
    jobs = [(gi, seed + r) for gi in range(len(groups)) for r in range(repeats)]
    start = time.perf_counter()
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=args) as pool:
            results = list(pool.map(_work, jobs))
    else:
        results = [_work(j) for j in jobs]
    runs = [run for batch in results for run in batch]
    per_table = {}
    for g in groups:
        for M, table in sorted(g.tables.items()):
            name = table.path.name
            rs = [r for r in runs if r.table == name]
            rand = random_search(g, M, random_repeats, seed)
            per_table[name] = {
                "M": M, **summarize(rs),
                "random_median_evals_to_1pct": percentile(rand, 50),
                "random_p90_evals_to_1pct": percentile(rand, 90),
                "random_miss_rate_1pct": sum(v is None or v > settings.budget for v in rand)
                / len(rand),
            }
    overall = summarize(runs)
    rand_all = [v for g in groups for M in g.tables for v in random_search(g, M, random_repeats,
                                                                           seed)]
    overall["random_median_evals_to_1pct"] = percentile(rand_all, 50)
    overall["random_p90_evals_to_1pct"] = percentile(rand_all, 90)
    return {"settings": asdict(settings), "repeats": repeats, "seed": seed,
            "tables": len(per_table), "seconds": round(time.perf_counter() - start, 1),
            "overall": overall, "per_table": per_table, "runs": [asdict(r) for r in runs]}


def summary_line(result: dict[str, Any]) -> str:
    o = result["overall"]
    return (f"median_evals_to_1pct={_num(o['median_evals_to_1pct'])} "
            f"p90_evals_to_1pct={_num(o['p90_evals_to_1pct'])} "
            f"miss_rate={o['miss_rate_1pct']:.3f} "
            f"median_evals_to_2pct={_num(o['median_evals_to_2pct'])} "
            f"p90_evals_to_2pct={_num(o['p90_evals_to_2pct'])} "
            f"miss_rate_2pct={o['miss_rate_2pct']:.3f} "
            f"regret16={o['mean_regret_at_16']:.4f} regret32={o['mean_regret_at_32']:.4f} "
            f"regret64={o['mean_regret_at_64']:.4f} "
            f"mean_measurements={o['mean_measurements']:.1f} mean_gpu_ms={o['mean_gpu_ms']:.1f} "
            f"random_median_evals_to_1pct={_num(o['random_median_evals_to_1pct'])} "
            f"random_p90_evals_to_1pct={_num(o['random_p90_evals_to_1pct'])} "
            f"tables={result['tables']} repeats={result['repeats']}")


def report(result: dict[str, Any]) -> str:
    budget = result["settings"]["budget"]
    head = (f"{'table':<46} {'M':>5} | {'med1%':>6} {'p90':>6} {'miss':>5} | {'med2%':>6} "
            f"{'p90':>6} {'miss':>5} | {'reg@16':>7} {'reg@32':>7} {'reg@64':>7} | {'meas':>5} "
            f"{'gpu_ms':>7} | random {'med1%':>6} {'p90':>6} miss@{budget}")
    lines = [head, "-" * len(head)]
    for name, t in result["per_table"].items():
        lines.append(
            f"{name[:46]:<46} {t['M']:>5} | {_num(t['median_evals_to_1pct']):>6} "
            f"{_num(t['p90_evals_to_1pct']):>6} {t['miss_rate_1pct']:>5.2f} | "
            f"{_num(t['median_evals_to_2pct']):>6} {_num(t['p90_evals_to_2pct']):>6} "
            f"{t['miss_rate_2pct']:>5.2f} | {t['mean_regret_at_16']:>7.4f} "
            f"{t['mean_regret_at_32']:>7.4f} {t['mean_regret_at_64']:>7.4f} | "
            f"{t['mean_measurements']:>5.1f} {t['mean_gpu_ms']:>7.1f} | "
            f"       {_num(t['random_median_evals_to_1pct']):>6} "
            f"{_num(t['random_p90_evals_to_1pct']):>6} {t['random_miss_rate_1pct']:.2f}")
    return "\n".join(lines)


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:g}" if x == int(x) else f"{x:.1f}"


# -- configuration ---------------------------------------------------------------------------------
def _search_space_config(name: str) -> SearchSpaceConfig:
    path = search_space_root() / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(search_space_root().glob("*.yaml")))
        raise UserError(f"--search-space {name}: unknown; use one of {known}")
    node = OmegaConf.merge(OmegaConf.structured(SearchSpaceConfig), OmegaConf.load(path))
    return OmegaConf.to_object(node)  # type: ignore[return-value]


def _shared_memory(device_name: str) -> Optional[int]:
    """Shared memory per block of the device preset for this GPU (None: no preset, no limit)."""
    for path in sorted((config_root() / "device").glob("*.yaml")):
        preset = OmegaConf.load(path)
        name = str(preset.get("name", ""))
        if name not in ("auto", "cpu") and device_token(name) == device_token(device_name):
            value = preset.get("shared_memory_per_block")
            return int(value) if value is not None else None
    return None


def load_settings(sampler: str, pruner: str, overrides: Sequence[str], **top: Any) -> Settings:
    """The conf/ presets for sampler and pruner, then `sampler.KEY=VALUE` / `pruner.KEY=VALUE`."""
    if sampler not in SAMPLERS:
        raise UserError(f"--sampler {sampler}: use one of {', '.join(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise UserError(f"--pruner {pruner}: use one of {', '.join(PRUNERS)}")
    nodes = {
        "sampler": OmegaConf.merge(OmegaConf.structured(SamplerConfig),
                                   OmegaConf.load(config_root() / "sampler" / f"{sampler}.yaml")),
        "pruner": OmegaConf.merge(OmegaConf.structured(PrunerConfig),
                                  OmegaConf.load(config_root() / "pruner" / f"{pruner}.yaml")),
    }
    for item in overrides:
        key, sep, value = item.partition("=")
        group, dot, name = key.partition(".")
        if not sep or not dot or group not in nodes:
            raise UserError(f"--set {item}: write sampler.KEY=VALUE or pruner.KEY=VALUE")
        known = [f.name for f in fields(SamplerConfig if group == "sampler" else PrunerConfig)]
        if name not in known:
            raise UserError(f"--set {item}: {group} has no {name}; known: {', '.join(known)}")
        try:
            OmegaConf.update(nodes[group], name, _parse_value(value), merge=False)
        except OmegaConfBaseException as exc:
            raise UserError(f"--set {item}: {str(exc).splitlines()[0]}") from None
    settings = Settings(sampler=OmegaConf.to_object(nodes["sampler"]),  # type: ignore[arg-type]
                        pruner=OmegaConf.to_object(nodes["pruner"]), **top)  # type: ignore
    if settings.neighbours not in ("none", "below", "both"):
        raise UserError(f"--neighbours {settings.neighbours}: use none, below or both")
    if settings.budget < 1:
        raise UserError(f"--budget {settings.budget}: must be at least 1")
    if settings.patience is not None and settings.patience < 1:
        raise UserError(f"--patience {settings.patience}: must be at least 1")
    make_pruner(settings.pruner)  # validates the pruner's settings
    return settings


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None if text in ("null", "None") else text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        print(f"autotune.evaluate: error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = _Parser(prog="python -m autotune.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("tables", nargs="+", help="moe-grid-table/1 files, globs or folders")
    p.add_argument("--sampler", default=SamplerConfig.name,
                   help=f"preset of conf/sampler (default: {SamplerConfig.name}, as a run)")
    p.add_argument("--pruner", default="none", help="preset of conf/pruner (default: none)")
    p.add_argument("--set", action="append", default=[], metavar="GROUP.KEY=VALUE",
                   help="override a sampler or pruner setting, e.g. sampler.prior_trials=0")
    p.add_argument("--budget", type=int, default=64, help="measurements per bucket (64)")
    p.add_argument("--patience", type=int, default=None, help="stop after this many "
                   "measurements without a 0.5%% gain (default: none)")
    p.add_argument("--neighbours", default="none", help="warm starts from neighbouring "
                   "buckets: none | below (tuned in ascending M, as a run) | both")
    p.add_argument("--noise-cv", type=float, default=0.0, help="emulated measurement noise")
    p.add_argument("--full-runs", action="store_true", help="never stop a run at the table's "
                   "optimum (to count what budget and patience really spend)")
    p.add_argument("--search-space", default="vllm")
    p.add_argument("--repeats", type=int, default=20, help="seeds per table (20)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--random-repeats", type=int, default=1000,
                   help="random orders per table for the random-search baseline (1000)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--json", type=Path, default=None, help="write every run and summary here")
    p.add_argument("--quiet", action="store_true", help="print only the summary line")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.repeats < 1 or args.random_repeats < 1 or args.workers < 1:
            raise UserError("--repeats, --random-repeats and --workers must be at least 1")
        if args.noise_cv < 0:
            raise UserError(f"--noise-cv {args.noise_cv}: must be 0 or more")
        settings = load_settings(args.sampler, args.pruner, args.set, budget=args.budget,
                                 patience=args.patience, neighbours=args.neighbours,
                                 noise_cv=args.noise_cv, search_space=args.search_space,
                                 stop_at_optimum=not args.full_runs)
        if args.json:
            check_file(f"--json {args.json}", args.json)  # before the evaluation, not after
        paths = expand_table_paths(args.tables)
        result = evaluate(paths, settings, args.repeats, args.seed, args.workers,
                          args.random_repeats)
        if args.json:
            try:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(_finite(result), indent=1) + "\n")
            except OSError as exc:  # checked before, yet the disk may have filled meanwhile
                raise UserError(f"--json {args.json}: cannot write it ({exc.strerror})") from None
    except UserError as exc:
        print(f"autotune.evaluate: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(report(result))
    print(summary_line(result))
    return 0


def _finite(x: Any) -> Any:
    """inf (a miss) as null: JSON has no infinity."""
    if isinstance(x, float) and math.isinf(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


if __name__ == "__main__":
    sys.exit(main())
