"""The bucket loop every run goes through (a single run, each worker): open a bucket's study, tune
it, settle its entry, move on; buckets other runs are measuring are looked at again later.

Each bucket's prior (what prior_gp and speculative compiles start from) is computed once here
and handed to the sampler and the benchmarker.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import wait
from itertools import zip_longest
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

from autotune import wall_clock
from autotune.bench import Benchmarker
from autotune.bench.gpu import WorkerBenchmarker
from autotune.bench.protocol import Reporting, Speculating
from autotune.consolidate.entries import consolidate
from autotune.consolidate.finalists import Consolidation
from autotune.files.grid_table import write_grid_table
from autotune.lifetime import lifelong_thread
from autotune.plan import Plan
from autotune.problem import vllm_rules
from autotune.problem.space import Config
from autotune.run.settler import Settler
from autotune.run.stop import STOP, check_stop, stop_requested, uninterrupted
from autotune.search.prior import PriorWeights, bucket_prior
from autotune.search.samplers import make_pruner, make_sampler
from autotune.search.warm_starts import first_trials, neighbour_bests
from autotune.study.liveness import is_mine
from autotune.study.records import (
    BucketOutcome,
    Record,
    StopReason,
    StudyAttr,
    TrialAttr,
    read_records,
)
from autotune.study.run_studies import RunStudies
from autotune.study.tuner import BucketTuner

log = logging.getLogger(__name__)

# How long a run that left buckets to other runs waits before looking at them again.
POLL_S = 1.0


def bucket_budget(plan: Plan) -> int:
    return plan.space.size() if plan.cfg.sampler.name == "grid" else plan.cfg.trials


def work(plan: Plan, studies: RunStudies, bench: Benchmarker, *, first: int = 0,
         outcomes: Optional[dict[int, BucketOutcome]] = None,
         on_measured: Callable[[Record], None] = lambda r: None,
         on_bucket: Callable[[], None] = lambda: None) -> dict[int, BucketOutcome]:
    """Work through the buckets, starting at index `first`, until every one is finished, and
    settle each bucket's entry as it finishes (alongside the next buckets' search: run/settler.py).

    With `from_both_ends` (one run, a benchmarker whose worker serves threads in turn), two
    loops share the work: this thread's up from the smallest batch size, and one down from the
    largest in a thread of its own (`two_loops`); each bucket starts from the winners of the
    tuned buckets on its own loop's side.

    A bucket whose remaining budget other runs are measuring is left and looked at again later,
    so runs sharing the storage (workers, cluster jobs) finish together and take over the work
    of a run that dies.
    """
    wall_clock.mark_started()
    loops = _Loops(plan, studies, bench, {} if outcomes is None else outcomes, on_measured,
                   on_bucket)
    alongside = plan.cfg.retime_alongside and isinstance(bench, WorkerBenchmarker)
    with Settler(lambda M: _settle(plan, studies, bench, M), alongside) as settler:
        if _two_loops(plan, bench):
            low, high = plan.loops()
            two_loops(lambda halted: loops.run(low, settler, "below", halted),
                      lambda halted: loops.run(high, settler, "above", halted))
        else:
            loops.run(plan.buckets[first:] + plan.buckets[:first], settler, None, lambda: False)
        settler.finish()
    return loops.outcomes


class _Loops:
    """What the bucket loops of a run share: the studies, the benchmarker, the buckets' priors
    and outcomes."""

    def __init__(self, plan: Plan, studies: RunStudies, bench: Benchmarker,
                 outcomes: dict[int, BucketOutcome], on_measured: Callable[[Record], None],
                 on_bucket: Callable[[], None]):
        self.plan, self.studies, self.bench, self.outcomes = plan, studies, bench, outcomes
        self.on_measured, self.on_bucket = on_measured, on_bucket
        self._priors: dict[int, Optional[np.ndarray]] = {}

    def prior_of(self, M: int) -> Optional[np.ndarray]:
        if M not in self._priors:
            self._priors[M] = _prior(self.plan, M)
        return self._priors[M]

    def run(self, pending: list[int], settler: Settler, side: Optional[str],
            halted: Callable[[], bool]) -> None:
        """Tune the pending buckets in their order (each starting from the tuned buckets on
        `side` of it, or on both), settling each as it ends, until `halted()` or a stop."""
        def stopping() -> bool:
            return stop_requested() or halted()

        while pending:
            progressed = False
            for M in list(pending):
                if stopping():
                    raise KeyboardInterrupt
                outcome = self._bucket(M, pending, side, stopping)
                if outcome.stop_reason != StopReason.SHARED:
                    pending.remove(M)
                    progressed = True
                    settler.submit(M)
                progressed = progressed or outcome.new_measurements > 0
            if pending and not progressed:
                STOP.wait(POLL_S)

    def _bucket(self, M: int, pending: list[int], side: Optional[str],
                stopping: Callable[[], bool]) -> BucketOutcome:
        plan, studies, bench = self.plan, self.studies, self.bench
        if M not in studies.tuned:
            study = studies.tune(M, make_sampler(plan.cfg.sampler, space=plan.space,
                                                 prior=self.prior_of(M)),
                                 make_pruner(plan.cfg.pruner))
            _describe_study(study, plan, M)
        following = pending[pending.index(M) + 1:][:1]
        ranked = [(m, self.prior_of(m)) for m in dict.fromkeys(
            [M] + following + _across_shortcut(plan, M, pending))]
        warm = _warm_starts(plan, M, studies, side)
        # The next bucket will mostly start from this one's first trials (the neighbours'
        # winners): compiled for it too, ahead of the rankings.
        _speculate(plan, bench, ranked, ahead=[(c, m) for m in following for _, c in warm])
        outcome = _tune_bucket(plan, studies, bench, M, warm, self.on_measured, stopping)
        self.outcomes[M] = _merge(self.outcomes.get(M), outcome)
        self.on_bucket()
        if outcome.stop_reason != StopReason.SHARED:
            if following:  # and the next one's warm starts from this one, compile now
                ahead = [(c, m) for m in following for _, c in neighbour_bests(
                    {M: outcome.records}, m, plan.cfg.sampler.neighbour_trials)]
                _speculate(plan, bench, ranked[1:], ahead=ahead)
            _finish_bucket(plan, bench, outcome)
        return outcome


def compile_first_trials(plan: Plan, bench: Benchmarker) -> None:
    """Hand the benchmarker the first trials of each loop's first bucket that need no storage
    (vLLM's default, the compared file's entry, the prior's picks), as soon as it is open: their
    compiles start while the storage opens and the first studies are made (on an H200 the first
    trial was asked 2.6 s into the search, and compiled only from then)."""
    if plan.cfg.sampler.name == "grid":
        return
    for M in [loop[0] for loop in plan.loops()] if _two_loops(plan, bench) else plan.buckets[:1]:
        bench.prepare([c for _, c in _warm_starts(plan, M, None)], M)


def _two_loops(plan: Plan, bench: Benchmarker) -> bool:
    """The plan's two loops, with a benchmarker whose worker serves two threads in turn."""
    return len(plan.loops()) == 2 and isinstance(bench, WorkerBenchmarker)


def two_loops(here: Callable[[Callable[[], bool]], None],
              there: Callable[[Callable[[], bool]], None]) -> None:
    """Run `here` in this thread and `there` in the process's second-loop thread, each given a
    `halted()` to check between trials: true once the other has failed, so it stops too. A
    failure of either is raised here once both have ended (the other's own failure first, over
    the interruption it caused here)."""
    halt = threading.Event()

    def guarded(body: Callable[[Callable[[], bool]], None]) -> None:
        try:
            body(halt.is_set)
        except BaseException:
            halt.set()
            raise

    def in_background() -> None:
        with wall_clock.alongside(wall_clock.LOOP_ALONGSIDE):
            guarded(there)

    # A thread for the process's life: a measuring worker it restarts must not die with it.
    other = lifelong_thread("autotune-loop").submit(in_background)
    try:
        guarded(here)
    except BaseException as exc:
        wait([other])  # it measures with the caller's benchmarker: ended before that closes
        failure = other.exception()
        if isinstance(exc, KeyboardInterrupt) and failure is not None and not isinstance(
                failure, KeyboardInterrupt) and not stop_requested():
            raise failure from None
        raise
    try:
        other.result()
    finally:
        if not other.done():  # a second Ctrl-C here: it stops at its next check
            halt.set()
            wait([other])


def _tune_bucket(plan: Plan, studies: RunStudies, bench: Benchmarker, M: int,
                 warm_starts: list[tuple[str, Config]],
                 on_measured: Callable[[Record], None],
                 should_stop: Callable[[], bool]) -> BucketOutcome:
    tuner = BucketTuner(study=studies.tuned[M], space=plan.space, bench=bench, M=M,
                        budget=bucket_budget(plan), patience=plan.cfg.patience,
                        exhaustive=plan.cfg.sampler.name == "grid",
                        lookahead=plan.cfg.sampler.lookahead,
                        on_measured=on_measured, should_stop=should_stop)
    return tuner.run(warm_starts=warm_starts)


def _finish_bucket(plan: Plan, bench: Benchmarker, outcome: BucketOutcome) -> None:
    """A bucket whose budget is spent: logged, and its grid table written (sampler=grid)."""
    _log_outcome(outcome)
    if plan.cfg.sampler.name == "grid":
        environment = bench.environment if isinstance(bench, Reporting) else {}
        write_grid_table(plan, outcome, environment, Path(plan.cfg.table_dir))


def _settle(plan: Plan, studies: RunStudies, bench: Benchmarker, M: int) -> None:
    """The bucket's entry, re-timed and checked, stored in its study as soon as its search is
    over: a Ctrl-C or kill later keeps it, and workers settle the buckets they finish. With the
    bucket below or above already settled, the midpoint check between the two is made now too
    (alongside the search, like the re-timing); the run's end looks it up instead of timing it."""
    check_stop()
    below = max((m for m in plan.buckets if m < M), default=None)
    above = min((m for m in plan.buckets if m > M), default=None)
    consolidate_plan(plan, studies, bench, buckets=[
        m for m in (below, M, above) if m == M or _settled(studies, m)])


def _settled(studies: RunStudies, M: Optional[int]) -> bool:
    study = studies.existing([M]).get(M) if M is not None else None
    return study is not None and Consolidation.stored(study) is not None


def consolidate_plan(plan: Plan, studies: RunStudies, bench: Optional[Benchmarker],
                     buckets: Optional[list[int]] = None) -> dict[int, dict[str, int]]:
    """Re-time finalists and pick each bucket's entry (bench=None: only stored results)."""
    return consolidate(studies.existing(buckets or plan.buckets), plan.shape, plan.space, bench,
                       finalists=plan.cfg.finalists, rounds=plan.cfg.retime_rounds,
                       midpoint_rounds=plan.cfg.midpoint_rounds,
                       comparison=plan.comparison)


def abandon_mine(studies: RunStudies) -> None:
    """Fail this process's trials still RUNNING (Ctrl-C landed outside a measurement)."""
    with uninterrupted():
        try:
            for study in list(studies.tuned.values()):
                for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    if is_mine(t.user_attrs.get(TrialAttr.WORKER)):
                        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        except Exception as exc:  # the next run fails them as dead anyway
            log.warning("could not mark the trial in flight failed (%s); the next run will", exc)


def _merge(before: Optional[BucketOutcome], now: BucketOutcome) -> BucketOutcome:
    if before is None:
        return now
    now.new_measurements += before.new_measurements
    now.excluded += before.excluded
    now.duplicates += before.duplicates
    now.seconds += before.seconds
    return now


def _prior(plan: Plan, M: int) -> Optional[np.ndarray]:
    if plan.cfg.sampler.name != "prior_gp":
        return None
    return bucket_prior(plan.space, plan.device.name, M, files=plan.prior_sources,
                        weights=PriorWeights(table=plan.cfg.sampler.prior_table_weight))


def _speculate(plan: Plan, bench: Benchmarker, buckets: list[tuple[int, Optional[np.ndarray]]],
               ahead: Sequence[tuple[Config, int]] = ()) -> None:
    """Compile, while the GPU times others, the (config, M) pairs of `ahead`, then the configs the
    prior ranks first for these buckets (this one and the next, whose kernels differ when it
    crosses vLLM's small-M shortcut: on an H100, qwen3-30B's M=8 waited 2.4 s (bf16) and 8.6 s
    (fp8) for its first trials, the winners of M=1 to 4, compiled again)."""
    count = plan.cfg.benchmark.speculate
    if count <= 0 or not isinstance(bench, Speculating):
        return
    configs = list(plan.space.configs())
    ranked = [[(configs[i], M) for i in np.argsort(-prior, kind="stable")[:count]]
              for M, prior in buckets if prior is not None]
    # The rankings advance together.
    bench.speculate(list(ahead) + [c for group in zip_longest(*ranked) for c in group
                                   if c is not None])


def _across_shortcut(plan: Plan, M: int, pending: list[int]) -> list[int]:
    """The first bucket still to tune past vLLM's small-M shortcut, seen from M below it: its
    kernels differ from M's, so nothing compiled for M serves it (on an H200, qwen3-30B bf16's
    M=8 waited 5.5 s for compiles). Ranked from the first bucket on, the pool compiles its
    likeliest configs while the small buckets are tuned."""
    s = plan.shape
    if not vllm_rules.naive_assignment(M * s.topk, s.E):
        return []
    past = [m for m in pending if m > M and not vllm_rules.naive_assignment(m * s.topk, s.E)]
    return past[:1]


def _warm_starts(plan: Plan, M: int, studies: Optional[RunStudies], side: Optional[str] = None):
    """The bucket's first trials (autotune/search/warm_starts.py), with the other buckets of the same
    device, shape, space and benchmark in the storage (this run's or an earlier one's; none
    without studies); with a side, only those below or above M (a loop's own side: offline, the
    nearest tuned bucket on the other loop's side, far away while the loops are apart, led
    MiniMax M=16 to miss its best in 6 of 10 repeats, `python -m autotune.evaluate --neighbours
    ends`)."""
    siblings = studies.siblings(plan.study(M).run) if studies is not None else {}
    tuned = _RecordsOnDemand({m: study for m, study in siblings.items() if m != M and (
        side is None or (m < M if side == "below" else m > M))})
    return first_trials(plan.space, plan.device.name, M, plan.cfg.sampler, tuned,
                        prior_files=plan.prior_sources if plan.cfg.sampler.prior_trials > 0 else None,
                        compared=plan.comparison.entries if plan.comparison else None)


class _RecordsOnDemand(Mapping[int, list[Record]]):
    """Studies' records by bucket, each read when first looked up: the warm starts look at the
    nearest measured buckets only, and reading every study took 0.1 s a bucket at 18 buckets."""

    def __init__(self, studies: dict[int, optuna.Study]):
        self._studies = studies
        self._read: dict[int, list[Record]] = {}

    def __getitem__(self, M: int) -> list[Record]:
        if M not in self._read:
            self._read[M] = read_records(self._studies[M])
        return self._read[M]

    def __iter__(self) -> Iterator[int]:
        return iter(self._studies)

    def __len__(self) -> int:
        return len(self._studies)


def _describe_study(study: optuna.Study, plan: Plan, M: int) -> None:
    """Study-level attributes, so a storage explains itself (report, optuna-dashboard)."""
    if study.user_attrs.get(StudyAttr.M) == M:
        return
    s = plan.shape
    study.set_user_attr(StudyAttr.M, M)
    study.set_user_attr(StudyAttr.SHAPE, {"model": s.model, "E": s.E, "N": s.N, "K": s.K, "topk": s.topk,
                                  "dtype": s.dtype, "block_shape": s.block_shape, "tp": s.tp,
                                  "ep": s.ep})
    study.set_user_attr(StudyAttr.DEVICE, plan.device.name)
    study.set_user_attr(StudyAttr.SEARCH_SPACE, {"name": plan.space.name, "params": plan.space.params,
                                         "constraints": plan.space.constraints})
    study.set_user_attr(StudyAttr.BENCHMARK, plan.benchmark_identity)


def _log_outcome(o: BucketOutcome) -> None:
    best = o.best
    summary = f"best {best.us:.2f} us {best.config}" if best else "no feasible config"
    log.info("M=%d: %d measurements (%d new), %d infeasible, stop: %s; %s", o.M, len(o.records),
             o.new_measurements, o.infeasible, o.stop_reason, summary)
