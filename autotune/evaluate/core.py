"""`python -m autotune.evaluate TABLES...`: how many measurements the search needs, offline.

Replays recorded `moe-grid-table/1` tables through the real study code (BucketTuner with the
configured sampler, warm starts and pruner, on the ReplayBenchmarker; in-memory Optuna storage),
many repeats with different seeds. Per table and repeat it follows the config the study holds
best after each measurement and judges it on the table's recorded time:
- measurements until that config is within 1% (and 2%) of the table's best; a miss when the run
  ends (budget, patience) before;
- regret (recorded time / table's best - 1) after 16, 32 and 64 measurements;
- GPU time spent timing, under a cost model (full_calls / LOOK_CALLS kernel calls per
  measurement / first look), to show what pruning saves.
Random search is the baseline: a random order of the constrained space, without replacement (what
random sampling does once duplicates are answered from the study), measured to the end.

Warm starts from neighbouring buckets (`--neighbours`) come from the tables of the same GPU and
shape given: `below` tunes the tables in ascending M, each bucket warm-started from those before
it; `ends` as a run's two bucket loops do, one up from the smallest M and one down from the
largest, in turn, each warm-started from the tuned buckets on its own side; `both` first tunes
every table alone, then each again warm-started from the tuned tables on both sides. The prior
never reads a shipped file or recorded table of a table's own GPU and shape
(autotune/search/prior.py), so every table is judged leave-one-shape-out.

The last line is machine-readable:
`median_evals_to_1pct=NN p90_evals_to_1pct=NN miss_rate=F ... tables=N repeats=R`.
"""

from __future__ import annotations

import math
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any, Optional, Sequence

import optuna
from omegaconf import OmegaConf

from autotune.bench.replay import ReplayBenchmarker
from autotune.bench.timing import LOOK_REPLAYS, warmup_replays_at
from autotune.config import (
    BenchmarkConfig,
    PrunerConfig,
    SamplerConfig,
    SearchSpaceConfig,
    config_root,
    search_space_root,
)
from autotune.errors import UserError
from autotune.evaluate.stats import Run, percentile, summarize
from autotune.files.grid_table import GridTable
from autotune.files.names import device_token
from autotune.plan import split_for_two_loops
from autotune.problem.shape import MoEShape
from autotune.problem.space import SearchSpace
from autotune.search.prior import PriorSource, PriorWeights, bucket_prior, load_prior_sources
from autotune.search.samplers import make_pruner, make_sampler
from autotune.search.warm_starts import first_trials
from autotune.study.records import Record, best_record
from autotune.study.tuner import BucketTuner

# GPU cost model, in kernel calls per config (a CUDA graph of calls_per_graph calls):
# a measurement = eager warm-up + capture + the default warm-up and timed replays at M;
# a first look = eager warm-up + capture + LOOK_REPLAYS; the measurement after it times the same
# graph, the look's replays counted as warm-up (bench/timing.py: GpuTimer).
_TIMING = BenchmarkConfig()
LOOK_CALLS = _TIMING.calls_per_graph * (1 + 1 + sum(LOOK_REPLAYS))


def full_calls(M: int, looked: bool) -> int:
    setup = 0 if looked else 1 + 1  # eager warm-up and capture: the look did them
    return _TIMING.calls_per_graph * (setup + warmup_replays_at(M, _TIMING, looked)
                                      + _TIMING.replays)


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
    if settings.neighbours == "ends":
        low, high = split_for_two_loops(Ms)
        tuned, runs = {}, []
        for M in [M for pair in zip_longest(low, high) for M in pair if M is not None]:
            # Each loop starts from its own side's tuned buckets, as in a run.
            side = {m: r for m, r in tuned.items() if (m < M if M in low else m > M)}
            run, tuned[M] = _run_table(group, M, settings, seed, side, prior_files)
            runs.append(run)
        return sorted(runs, key=lambda r: r.M)
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
            calls = LOOK_CALLS * looked + full_calls(M, looked) * (not r.pruned)
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
