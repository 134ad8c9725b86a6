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

from autotune.bench import Benchmarker, open_benchmarker
from autotune.consolidate import consolidate, existing_studies
from autotune.errors import UserError
from autotune.formats import config_file_name, render, sglang_subdir, write_atomic
from autotune.plan import Plan
from autotune.priors import bucket_prior
from autotune.samplers import make_pruner, make_sampler
from autotune.storage import open_storage
from autotune.study import BucketOutcome, BucketTuner, Record, open_study, read_records
from autotune.tables import write_grid_table
from autotune.warm_starts import first_trials

log = logging.getLogger(__name__)


@dataclass
class TuneResult:
    plan: Plan
    outcomes: list[BucketOutcome] = field(default_factory=list)
    entries: dict[int, dict[str, int]] = field(default_factory=dict)  # what the file holds
    output_path: Optional[Path] = None  # the vLLM file (None: no bucket has an entry)
    files: list[Path] = field(default_factory=list)  # the vLLM file and its copies
    report_dir: Optional[Path] = None
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
            study = open_study(storage, plan.study_name(M), _sampler(plan, M),
                               make_pruner(plan.cfg.pruner))
            _describe_study(study, plan, M)
            tuner = BucketTuner(study=study, space=plan.space, bench=bench, M=M, budget=budget,
                                patience=plan.cfg.patience, exhaustive=exhaustive,
                                lookahead=plan.cfg.sampler.lookahead,
                                on_measured=lambda r: _progress(bar, r))
            done_before = sum(1 for t in study.get_trials(deepcopy=False)
                              if t.user_attrs.get("measured"))
            bar.update(min(done_before, budget))
            outcome = tuner.run(warm_starts=_warm_starts(plan, M, storage))
            bar.update(budget - min(len(outcome.records), budget))
            result.outcomes.append(outcome)
            _log_outcome(outcome)
            if exhaustive:
                environment = getattr(bench, "environment", {}) or {}
                write_grid_table(plan, outcome, environment, Path(plan.cfg.table_dir))
        bar.close()
        result.entries = _consolidate(plan, storage, bench)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
        if hasattr(bench, "stats"):
            result.bench_stats = dataclasses.asdict(bench.stats())
            result.bench_stats["idle_share"] = bench.stats().idle_share
        if owns_bench:
            bench.close()
    if result.interrupted:  # keep the entries already re-timed and verified; measure nothing more
        result.entries = _consolidate(plan, storage, None)
    result.files = write_config_files(plan, result.entries)
    result.output_path = result.files[0] if result.files else None
    result.report_dir = _write_report(plan, storage)
    return result


def _consolidate(plan: Plan, storage, bench: Optional[Benchmarker]) -> dict[int, dict[str, int]]:
    names = {M: plan.study_name(M) for M in plan.buckets}
    return consolidate(storage, names, plan.shape, bench, finalists=plan.cfg.finalists,
                       rounds=plan.cfg.retime_rounds, comparison=plan.comparison)


def write_config_files(plan: Plan, entries: dict[int, dict[str, int]]) -> list[Path]:
    """The vLLM file; on request its SGLang-named copy and a copy in install_dir."""
    if not entries:
        return []
    version = _triton_version(plan)
    text = render(entries, version)
    write_atomic(plan.output_path, text)
    files = [plan.output_path]
    if plan.cfg.sglang:
        s = plan.shape
        name = config_file_name(s.E, s.N, plan.device.name, s.dtype, s.block_shape, "sglang")
        path = plan.output_path.parent / sglang_subdir(version) / name
        write_atomic(path, render(entries, None))  # SGLang reads every key as a batch size
        files.append(path)
    if plan.cfg.install_dir:
        path = Path(plan.cfg.install_dir).expanduser() / plan.output_path.name
        try:
            write_atomic(path, text)
        except OSError as exc:
            raise UserError(f"install_dir={plan.cfg.install_dir}: cannot write there "
                            f"({exc.strerror}); the file is at {plan.output_path}") from None
        files.append(path)
    return files


def _write_report(plan: Plan, storage) -> Optional[Path]:
    from autotune.report import collect, write_report

    names = {M: plan.study_name(M) for M in plan.buckets}
    if not existing_studies(storage, names):  # interrupted before the first trial
        return None
    write_report(collect(storage, list(names.values()), storage_url=plan.storage),
                 plan.report_dir)
    return plan.report_dir


def _triton_version(plan: Plan) -> str:
    if plan.replay is not None:
        return plan.replay.triton_version()
    import triton

    return triton.__version__


def _sampler(plan: Plan, M: int) -> optuna.samplers.BaseSampler:
    prior = None
    if plan.cfg.sampler.name == "prior_gp":
        prior = bucket_prior(plan.space, plan.device.name, M, plan.cfg.sampler.prior_files)
    return make_sampler(plan.cfg.sampler, space=plan.space, prior=prior)


def _warm_starts(plan: Plan, M: int, storage: optuna.storages.BaseStorage):
    """The bucket's first trials (autotune/warm_starts.py), with every other bucket of the same
    device, shape, space and benchmark already in the storage (this run's or an earlier one's)."""
    prefix = plan.study_name(M).rsplit("M=", 1)[0] + "M="
    tuned = {}
    for name in optuna.get_all_study_names(storage):
        other = name[len(prefix):]
        if name.startswith(prefix) and other.isdigit() and int(other) != M:
            tuned[int(other)] = read_records(optuna.load_study(study_name=name, storage=storage))
    return first_trials(plan.space, plan.device.name, M, plan.cfg.sampler, tuned)


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
