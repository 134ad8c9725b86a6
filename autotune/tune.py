"""A whole run: one study per bucket, then the config file from everything the studies hold."""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import optuna
from tqdm import tqdm

from autotune.baselines import vllm_default_config
from autotune.bench import Benchmarker, open_benchmarker
from autotune.consolidate import best_entries
from autotune.formats import render, write_atomic
from autotune.plan import Plan
from autotune.samplers import make_pruner, make_sampler
from autotune.storage import open_storage
from autotune.study import BucketOutcome, BucketTuner, Record, open_study
from autotune.tables import write_grid_table

log = logging.getLogger(__name__)


@dataclass
class TuneResult:
    plan: Plan
    outcomes: list[BucketOutcome] = field(default_factory=list)
    output_path: Optional[Path] = None
    interrupted: bool = False
    bench_stats: dict = field(default_factory=dict)  # measuring/compile/idle time, restarts


def tune(plan: Plan, bench: Optional[Benchmarker] = None) -> TuneResult:
    """Tune every bucket of the plan and write the config file; resumable at any point."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(plan.storage)
    owns_bench = bench is None
    bench = bench or open_benchmarker(plan)
    result = TuneResult(plan)
    exhaustive = plan.cfg.sampler.name == "grid"
    budget = plan.space.size() if exhaustive else plan.cfg.trials
    bar = tqdm(total=budget * len(plan.buckets), unit="trial", file=sys.stderr,
               disable=not plan.cfg.progress, dynamic_ncols=True)
    try:
        for M in plan.buckets:
            bar.set_description(f"M={M}")
            study = open_study(storage, plan.study_name(M), make_sampler(plan.cfg.sampler),
                               make_pruner(plan.cfg.pruner))
            _describe_study(study, plan, M)
            tuner = BucketTuner(study=study, space=plan.space, bench=bench, M=M, budget=budget,
                                patience=plan.cfg.patience, exhaustive=exhaustive,
                                on_measured=lambda r: _progress(bar, r))
            done_before = sum(1 for t in study.get_trials(deepcopy=False)
                              if t.user_attrs.get("measured"))
            bar.update(min(done_before, budget))
            outcome = tuner.run(warm_starts=_warm_starts(plan, M))
            bar.update(budget - min(len(outcome.records), budget))
            result.outcomes.append(outcome)
            _log_outcome(outcome)
            if exhaustive:
                environment = getattr(bench, "environment", {}) or {}
                write_grid_table(plan, outcome, environment, Path(plan.cfg.table_dir))
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
        if hasattr(bench, "stats"):
            result.bench_stats = dataclasses.asdict(bench.stats())
            result.bench_stats["idle_share"] = bench.stats().idle_share
        if owns_bench:
            bench.close()
    result.output_path = write_config_file(plan, result.outcomes, bench)
    return result


def write_config_file(plan: Plan, outcomes: list[BucketOutcome],
                      bench: Benchmarker) -> Optional[Path]:
    entries = best_entries(outcomes)
    if not entries:
        return None
    write_atomic(plan.output_path, render(entries, _triton_version(plan)))
    return plan.output_path


def _triton_version(plan: Plan) -> str:
    if plan.replay is not None:
        return plan.replay.triton_version()
    import triton

    return triton.__version__


def _warm_starts(plan: Plan, M: int):
    if plan.cfg.sampler.warm_start_default:
        yield "vllm_default", vllm_default_config(M, plan.shape.E, plan.shape.dtype,
                                                  plan.shape.block_shape)


def _describe_study(study: optuna.Study, plan: Plan, M: int) -> None:
    """Study-level attributes, so a storage explains itself (report, optuna-dashboard)."""
    if study.user_attrs.get("M") == M:
        return
    s = plan.shape
    study.set_user_attr("M", M)
    study.set_user_attr("shape", {"model": s.model, "E": s.E, "N": s.N, "K": s.K, "topk": s.topk,
                                  "dtype": s.dtype, "block_shape": s.block_shape, "tp": s.tp,
                                  "ep": s.ep})
    study.set_user_attr("device", plan.device.name)
    study.set_user_attr("search_space", {"name": plan.space.name, "params": plan.space.params,
                                         "constraints": plan.space.constraints})
    study.set_user_attr("benchmark", plan.benchmark_identity)


def _progress(bar: tqdm, record: Record) -> None:
    bar.update(1)
    if record.ok:
        bar.set_postfix_str(f"last {record.us:.1f} us", refresh=False)


def _log_outcome(o: BucketOutcome) -> None:
    best = o.best
    summary = f"best {best.us:.2f} us {best.config}" if best else "no feasible config"
    log.info("M=%d: %d measurements (%d new), %d infeasible, stop: %s; %s", o.M, len(o.records),
             o.new_measurements, o.infeasible, o.stop_reason, summary)
