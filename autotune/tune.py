"""A whole run: one study per bucket, then the config file from everything the studies hold.

The file is always made from the storage, not from what this run measured: after Ctrl-C, a kill
or a run shared with other workers, it holds every bucket whose entry is settled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import sys
import threading
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import optuna
from optuna.trial import TrialState
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from autotune.bench import Benchmarker, open_benchmarker
from autotune.bench.protocol import Speculating
from autotune.consolidate import CONSOLIDATION, consolidate, existing_studies
from autotune.errors import UserError
from autotune.formats import Written, config_file_name, sglang_subdir, write_config_file
from autotune.gpu_lock import hold_gpu
from autotune.plan import Plan
from autotune.priors import PriorWeights, bucket_prior
from autotune.samplers import make_pruner, make_sampler
from autotune.space import SearchSpace
from autotune.storage import is_mine, open_storage
from autotune.study import (
    MEASURED,
    SHARED,
    BucketOutcome,
    BucketTuner,
    Record,
    open_study,
    read_records,
)
from autotune.tables import write_grid_table
from autotune.warm_starts import first_trials

log = logging.getLogger(__name__)

# How long a run that left buckets to other runs waits before looking at them again.
POLL_S = 1.0


@dataclass
class TuneResult:
    plan: Plan
    outcomes: list[BucketOutcome] = field(default_factory=list)
    entries: dict[int, dict[str, int]] = field(default_factory=dict)  # what the file holds
    settled: dict[int, dict] = field(default_factory=dict)  # their re-timing: us, source
    output_path: Optional[Path] = None  # the vLLM file (None: no bucket has an entry)
    files: list[Path] = field(default_factory=list)  # the vLLM file and its copies
    written: list[Written] = field(default_factory=list)  # the same, with any file kept beside
    report_dir: Optional[Path] = None
    interrupted: bool = False
    bench_stats: dict = field(default_factory=dict)  # measuring/compile/idle time, restarts
    problems: list[str] = field(default_factory=list)  # workers that failed, said on stderr
    complete: bool = True  # every bucket finished (False: rerun to resume)


def tune(plan: Plan, bench: Optional[Benchmarker] = None) -> TuneResult:
    """Tune every bucket of the plan and write the config file; resumable at any point."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if plan.cfg.workers > 1 and bench is None:
        from autotune.workers import run_workers

        return run_workers(plan)
    if bench is not None:
        return _tune(plan, open_storage(plan.storage), bench, owns_bench=False)
    with hold_gpu(plan):  # one measurer per GPU: held until the benchmarker is closed
        return _tune(plan, open_storage(plan.storage), open_benchmarker(plan), owns_bench=True)


def _tune(plan: Plan, storage: optuna.storages.BaseStorage, bench: Benchmarker,
          owns_bench: bool) -> TuneResult:
    result = TuneResult(plan)
    budget = bucket_budget(plan)
    bar = tqdm(total=budget * len(plan.buckets), unit="trial", file=sys.stderr,
               disable=not plan.cfg.progress, dynamic_ncols=True)
    studies: dict[int, optuna.Study] = {}
    outcomes: dict[int, BucketOutcome] = {}
    try:
        # Log lines clear the progress bar and are written above it, not onto its line.
        with graceful_stop(), logging_redirect_tqdm():
            work(plan, storage, bench, studies=studies, outcomes=outcomes,
                 on_measured=lambda r: _progress(bar, r),
                 on_bucket=lambda: _recount(bar, plan, studies, budget))
            bar.close()
            result.entries = consolidate_plan(plan, storage, bench)
            check_stop()
    except KeyboardInterrupt:
        result.interrupted = True
        result.complete = False
        abandon_mine(studies.values())
    finally:
        bar.close()
        if hasattr(bench, "stats"):
            result.bench_stats = dataclasses.asdict(bench.stats())
            result.bench_stats["idle_share"] = bench.stats().idle_share
        if owns_bench:
            bench.close()
    if result.interrupted:  # keep the entries already re-timed and verified; measure nothing more
        result.entries = consolidate_plan(plan, storage, None)
    with _uninterrupted():  # a Ctrl-C now would only lose the file: finish writing it
        finish(result, storage, outcomes)
    return result


def finish(result: TuneResult, storage: optuna.storages.BaseStorage,
           this_run: Optional[dict[int, BucketOutcome]] = None) -> None:
    """Outcomes from the storage, the files from the entries, the report."""
    plan = result.plan
    result.outcomes = read_outcomes(plan, storage, this_run)
    result.settled = settled_entries(plan, storage, result.entries)
    result.written = write_config_files(plan, result.entries, result.outcomes)
    result.files = [w.path for w in result.written]
    result.output_path = result.files[0] if result.files else None
    result.report_dir = _write_report(plan, storage)


def bucket_budget(plan: Plan) -> int:
    return plan.space.size() if plan.cfg.sampler.name == "grid" else plan.cfg.trials


def work(plan: Plan, storage: optuna.storages.BaseStorage, bench: Benchmarker, *,
         first: int = 0, studies: Optional[dict[int, optuna.Study]] = None,
         outcomes: Optional[dict[int, BucketOutcome]] = None,
         on_measured: Callable[[Record], None] = lambda r: None,
         on_bucket: Callable[[], None] = lambda: None) -> dict[int, BucketOutcome]:
    """Work through the buckets, starting at index `first`, until every one is finished, and
    settle each bucket's entry as it finishes.

    A bucket whose remaining budget other runs are measuring is left and looked at again later,
    so runs sharing the storage (workers, cluster jobs) finish together and take over the work
    of a run that dies.
    """
    studies = {} if studies is None else studies
    outcomes = {} if outcomes is None else outcomes
    pending = plan.buckets[first:] + plan.buckets[:first]
    exhaustive = plan.cfg.sampler.name == "grid"
    priors: dict[int, Optional[np.ndarray]] = {}

    def prior_of(M: int) -> Optional[np.ndarray]:
        if M not in priors:
            priors[M] = _prior(plan, M)
        return priors[M]

    while pending:
        progressed = False
        for M in list(pending):
            check_stop()
            if M not in studies:
                studies[M] = open_study(storage, plan.study_name(M), _sampler(plan, prior_of(M)),
                                        make_pruner(plan.cfg.pruner))
                _describe_study(studies[M], plan, M)
            later = pending[pending.index(M) + 1:]
            _speculate(plan, bench, [(M, prior_of(M))] + [(m, prior_of(m)) for m in later[:1]])
            tuner = BucketTuner(study=studies[M], space=plan.space, bench=bench, M=M,
                                budget=bucket_budget(plan), patience=plan.cfg.patience,
                                exhaustive=exhaustive, lookahead=plan.cfg.sampler.lookahead,
                                on_measured=on_measured, should_stop=stop_requested)
            outcome = tuner.run(warm_starts=_warm_starts(plan, M, storage))
            outcomes[M] = _merge(outcomes.get(M), outcome)
            on_bucket()
            if outcome.stop_reason != SHARED:
                pending.remove(M)
                progressed = True
                _log_outcome(outcome)
                if exhaustive:
                    environment = getattr(bench, "environment", {}) or {}
                    write_grid_table(plan, outcome, environment, Path(plan.cfg.table_dir))
                # Settle the bucket's entry now (re-timed finalists, stored in its study): a
                # Ctrl-C or kill later keeps it, and workers settle the buckets they finish.
                check_stop()
                consolidate_plan(plan, storage, bench, buckets=[M])
            progressed = progressed or outcome.new_measurements > 0
        if pending and not progressed:
            STOP.wait(POLL_S)
    return outcomes


def abandon_mine(studies) -> None:
    """Fail this process's trials still RUNNING (Ctrl-C landed outside a measurement)."""
    with _uninterrupted():
        _abandon_mine(studies)


@contextlib.contextmanager
def _uninterrupted():
    """Ctrl-C ignored for a short step that must not be cut (clean-up, writing the files)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals go elsewhere anyway
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# Set by the first Ctrl-C or SIGTERM: the run stops at the next safe point (see graceful_stop).
STOP = threading.Event()


@contextlib.contextmanager
def graceful_stop(quiet: bool = False):
    """The first Ctrl-C (or SIGTERM, as Slurm and `kill` send) lets the trial in flight finish and
    stops at the next safe point; a second Ctrl-C stops at once (the trial in flight is failed).

    A KeyboardInterrupt raised at an arbitrary point can land in a garbage-collector callback,
    where Python swallows it; checking a flag at safe points cannot be lost.
    """
    def first(signum, frame):
        if not STOP.is_set() and not quiet:
            print("autotune: stopping after the trial in flight (Ctrl-C again to stop now)",
                  file=sys.stderr, flush=True)
        STOP.set()
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    STOP.clear()
    try:
        previous = {s: signal.signal(s, first) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def stop_requested() -> bool:
    return STOP.is_set()


def check_stop() -> None:
    """At a safe point: leave through the interrupted path if a stop was asked for."""
    if STOP.is_set():
        raise KeyboardInterrupt


def _abandon_mine(studies) -> None:
    try:
        for study in studies:
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if is_mine(t.user_attrs.get("worker")):
                    study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    except Exception as exc:  # the next run fails them as dead anyway
        log.warning("could not mark the trial in flight failed (%s); the next run will", exc)


def read_outcomes(plan: Plan, storage: optuna.storages.BaseStorage,
                  this_run: Optional[dict[int, BucketOutcome]] = None) -> list[BucketOutcome]:
    """Every bucket's measurements as the storage holds them (this run's counts where known)."""
    this_run = this_run or {}
    names = {s.study_name for s in storage.get_all_studies()}
    out = []
    for M in plan.buckets:
        name = plan.study_name(M)
        if name not in names:
            continue
        study = optuna.load_study(study_name=name, storage=storage,
                                  sampler=optuna.samplers.RandomSampler())
        mine = this_run.get(M)
        out.append(BucketOutcome(
            M=M, study_name=name, records=read_records(study),
            new_measurements=_measured_here(study),
            excluded=mine.excluded if mine else 0, duplicates=mine.duplicates if mine else 0,
            seconds=mine.seconds if mine else 0.0,
            stop_reason=mine.stop_reason if mine else "not run"))
    return out


def _measured_here(study: optuna.Study) -> int:
    """The study's measurements this process made, by their owner stamps (a bucket cut off by
    Ctrl-C has no outcome of its own to count them)."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=MEASURED)
               if t.user_attrs.get("measured") and is_mine(t.user_attrs.get("worker")))


def settled_entries(plan: Plan, storage: optuna.storages.BaseStorage,
                    entries: dict[int, dict[str, int]]) -> dict[int, dict]:
    """The re-timed entry behind each bucket written (its time and source), as the studies hold
    it: what the summary shows, not the first pass's best."""
    studies = existing_studies(storage, {M: plan.study_name(M) for M in entries})
    out = {}
    for M, study in studies.items():
        entry = (study.user_attrs.get(CONSOLIDATION) or {}).get("entry")
        if entry and SearchSpace.key(entry["config"]) == SearchSpace.key(entries[M]):
            out[M] = entry
    return out


def consolidate_plan(plan: Plan, storage, bench: Optional[Benchmarker],
                     buckets: Optional[list[int]] = None) -> dict[int, dict[str, int]]:
    """Re-time finalists and pick each bucket's entry (bench=None: only stored results)."""
    names = {M: plan.study_name(M) for M in (buckets or plan.buckets)}
    return consolidate(storage, names, plan.shape, bench, finalists=plan.cfg.finalists,
                       rounds=plan.cfg.retime_rounds, comparison=plan.comparison)


def write_config_files(plan: Plan, entries: dict[int, dict[str, int]],
                       outcomes: list[BucketOutcome]) -> list[Written]:
    """The vLLM file; on request its SGLang-named copy and a copy in install_dir. None of them
    silently replaces a better file (formats.write_config_file keeps it beside)."""
    if not entries:
        return []
    version = _triton_version(plan)
    times = {(o.M, SearchSpace.key(r.config)): r.us for o in outcomes for r in o.records if r.ok}
    timing = lambda M, c: times.get((M, SearchSpace.key(c)))  # noqa: E731
    written = [write_config_file(plan.output_path, entries, version, timing)]
    if plan.cfg.sglang:
        s = plan.shape
        name = config_file_name(s.E, s.N, plan.device.name, s.dtype, s.block_shape, "sglang")
        path = plan.output_path.parent / sglang_subdir(version) / name
        # SGLang reads every key as a batch size: no triton_version
        written.append(write_config_file(path, entries, None, timing))
    if plan.cfg.install_dir:
        path = Path(plan.cfg.install_dir).expanduser() / plan.output_path.name
        try:
            written.append(write_config_file(path, entries, version, timing))
        except OSError as exc:
            raise UserError(f"install_dir={plan.cfg.install_dir}: cannot write there "
                            f"({exc.strerror}); the file is at {plan.output_path}") from None
    for w in written:
        if w.kept is not None:
            log.warning(w.describe())
    return written


def _write_report(plan: Plan, storage) -> Optional[Path]:
    from autotune.report import collect, write_report

    names = {M: plan.study_name(M) for M in plan.buckets}
    if not existing_studies(storage, names):  # interrupted before the first trial
        return None
    write_report(collect(storage, list(names.values()), storage_url=plan.storage),
                 plan.report_dir)
    return plan.report_dir


def _merge(before: Optional[BucketOutcome], now: BucketOutcome) -> BucketOutcome:
    if before is None:
        return now
    now.new_measurements += before.new_measurements
    now.excluded += before.excluded
    now.duplicates += before.duplicates
    now.seconds += before.seconds
    return now


def _triton_version(plan: Plan) -> str:
    if plan.replay is not None:
        return plan.replay.triton_version()
    import triton

    return triton.__version__


def _prior(plan: Plan, M: int) -> Optional[np.ndarray]:
    if plan.cfg.sampler.name != "prior_gp":
        return None
    return bucket_prior(plan.space, plan.device.name, M, files=plan.prior_sources,
                        weights=PriorWeights(table=plan.cfg.sampler.prior_table_weight))


def _sampler(plan: Plan, prior: Optional[np.ndarray]) -> optuna.samplers.BaseSampler:
    return make_sampler(plan.cfg.sampler, space=plan.space, prior=prior)


def _speculate(plan: Plan, bench: Benchmarker,
               buckets: list[tuple[int, Optional[np.ndarray]]]) -> None:
    """Compile the configs the prior ranks first for these buckets (this one and the next, whose
    kernels differ when it crosses vLLM's small-M shortcut) while the GPU times others."""
    count = plan.cfg.benchmark.speculate
    if count <= 0 or not isinstance(bench, Speculating):
        return
    configs = list(plan.space.configs())
    ranked = [[(configs[i], M) for i in np.argsort(-prior, kind="stable")[:count]]
              for M, prior in buckets if prior is not None]
    # The rankings advance together.
    bench.speculate([c for group in zip_longest(*ranked) for c in group if c is not None])


def _warm_starts(plan: Plan, M: int, storage: optuna.storages.BaseStorage):
    """The bucket's first trials (autotune/warm_starts.py), with every other bucket of the same
    device, shape, space and benchmark already in the storage (this run's or an earlier one's)."""
    prefix = plan.study_name(M).rsplit("M=", 1)[0] + "M="
    tuned = {}
    for name in optuna.get_all_study_names(storage):
        other = name[len(prefix):]
        if name.startswith(prefix) and other.isdigit() and int(other) != M:
            tuned[int(other)] = read_records(optuna.load_study(study_name=name, storage=storage))
    return first_trials(plan.space, plan.device.name, M, plan.cfg.sampler, tuned,
                        prior_files=plan.prior_sources if plan.cfg.sampler.prior_trials > 0 else None)


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


def _recount(bar: tqdm, plan: Plan, studies: dict[int, optuna.Study], budget: int) -> None:
    """Set the bar from the storage: other runs may have measured too."""
    if bar.disable:
        return
    done = sum(min(budget, len(read_records(s))) for s in studies.values())
    bar.update(done - bar.n)


def _log_outcome(o: BucketOutcome) -> None:
    best = o.best
    summary = f"best {best.us:.2f} us {best.config}" if best else "no feasible config"
    log.info("M=%d: %d measurements (%d new), %d infeasible, stop: %s; %s", o.M, len(o.records),
             o.new_measurements, o.infeasible, o.stop_reason, summary)
