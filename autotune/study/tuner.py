"""One bucket's study: ask configs, measure them, tell the results, until the budget is spent.

- Resume: finished trials of the stored study count toward the budget; trials left RUNNING by a
  run that is gone are marked failed (their configs may be proposed again).
- Sharing: several runs (worker processes, cluster jobs) may work on one study at once. Each
  reads the study before every proposal; the trials others are measuring count toward the
  budget, and a config another run is measuring is not measured again. A run that finds the rest
  of the budget claimed stops with StopReason.SHARED and may come back later.
- Warm starts are enqueued as the first trials (vLLM's default config, neighbours' winners).
- A config the search space excludes is told as infeasible without being measured; a config
  already measured is answered from the study. Neither counts as a measurement.
- Pruning (`pruner=screen`, the default): when the benchmarker can take a cheap first look
  (`Screening`), the look is reported to the pruner; a config it prunes (clearly slower than the
  incumbent) skips the full timing, and counts toward the budget. The pruned trial keeps the
  look's time, so samplers still learn from it. Look and measurement are one `visit`.
- Stopping: the budget of measurements, a patience rule (once the best config's GROUP_SIZE_M
  variants are measured too), or an exhausted space.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from autotune.bench.protocol import Benchmarker, Measurement, Screening, Speculating
from autotune.problem.space import Config, SearchSpace
from autotune.study.liveness import Heartbeat, fail_dead_trials, stamp
from autotune.study.records import (
    FEASIBILITY,
    MEASURED,
    BucketOutcome,
    Record,
    StopReason,
    TrialAttr,
    read_records,
    record_of,
)

log = logging.getLogger(__name__)

# A gain smaller than this does not reset the patience count.
MIN_IMPROVEMENT = 0.005


def open_study(storage, name: str, sampler, pruner) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner,
                               direction="minimize", load_if_exists=True)


def recover_interrupted(study: optuna.Study,
                        running: Optional[list[FrozenTrial]] = None) -> int:
    """Fail the trials that runs which are gone left RUNNING; return how many.

    Only dead runs' trials: another live run may share the study (see storage.is_dead).
    running: the study's RUNNING trials, if the caller has just read them.
    """
    return fail_dead_trials(study, running)


@dataclass
class BucketTuner:
    """Runs the ask/measure/tell loop of one bucket's study."""

    study: optuna.Study
    space: SearchSpace
    bench: Benchmarker
    M: int
    budget: int
    patience: Optional[int] = None
    lookahead: int = 1  # proposals asked ahead of their measurement (compiled meanwhile)
    exhaustive: bool = False
    on_measured: Callable[[Record], None] = lambda r: None
    should_stop: Callable[[], bool] = lambda: False  # a stop was asked for (Ctrl-C, SIGTERM)
    # An extra stopping rule over the records so far (the offline evaluation stops at the optimum).
    stop_when: Optional[Callable[[list[Record]], bool]] = None
    _seen: dict[tuple, Record] = field(default_factory=dict, init=False)
    _room: int = field(default=0, init=False)

    def run(self, warm_starts: Iterable[tuple[str, Mapping[str, int]]] = ()) -> BucketOutcome:
        start = time.perf_counter()
        self._look()
        queued = self._enqueue(warm_starts)
        if self.exhaustive:  # the whole order is known: compile all of it ahead, in that order
            queued = [c for c in self.space.configs() if SearchSpace.key(c) not in self._seen]
        self.bench.prepare(queued, self.M)  # known first trials compile in parallel at once
        counts = _Counts()
        pending: deque[tuple[optuna.Trial, Config]] = deque()  # asked, compiling, not yet timed
        try:
            stop = self._loop(pending, counts)
        finally:
            for trial, _ in pending:  # proposals never timed: failed, so they are asked again
                self._abandon(trial, None, TrialAttr.ABANDONED, "not timed")
        return BucketOutcome(M=self.M, study_name=self.study.study_name,
                             records=read_records(self.study), new_measurements=counts.new,
                             excluded=counts.excluded, duplicates=counts.duplicates,
                             seconds=time.perf_counter() - start, stop_reason=stop)

    def _loop(self, pending: deque, counts: "_Counts") -> StopReason:
        """Propose and measure until a stop reason holds; return it."""
        idle = 0
        while True:
            self._stop_if_asked()
            stop = self._look()
            # Stop, unless this run's own proposals in flight are what fill the budget.
            if stop is not None and not (
                    pending and stop in (StopReason.SHARED, StopReason.SPACE_EXHAUSTED)):
                return stop
            asked = self._propose(pending, counts)
            if asked:
                self.bench.prepare(asked, self.M)
                self._compile_forecast()
            if not pending:
                if stop is not None:
                    return stop
                idle += 1
                if idle >= 200:  # the sampler only proposes known or excluded configs
                    return StopReason.NO_NEW_PROPOSALS
                continue
            idle = 0
            self._stop_if_asked()
            trial, config = pending.popleft()
            record = self._measure_and_tell(trial, config)
            if record is not None:
                counts.new += 1
                self.on_measured(record)

    def _propose(self, pending: deque, counts: "_Counts") -> list[Config]:
        """Keep `lookahead` proposals in flight, so they compile while others are timed; return
        the configs newly put in flight."""
        asked = []
        for _ in range(2 * self.lookahead):
            if (len(pending) >= self.lookahead or self._room <= 0
                    or len(self._seen) + len(pending) >= self.space.size()):
                break
            if self.exhaustive:
                self._enqueue_next_in_grid(pending)
            trial = self._ask()
            if trial is None:
                continue
            self._room -= 1
            try:
                config = self.space.suggest(trial)
                if self._answered(trial, config, pending, counts):
                    continue
                pending.append((trial, config))
                asked.append(config)
            except (UpdateFinishedTrialError, ValueError) as exc:
                # Another run failed it as ownerless: with the storage busy, a trial's start
                # time can be seconds older than its first visible write. Nothing was measured;
                # propose again.
                if isinstance(exc, ValueError) and "Cannot tell" not in str(exc):
                    raise
                log.info("trial %d was failed by another run before it was measured",
                         trial.number)
        return asked

    def _answered(self, trial: optuna.Trial, config: Config, pending: deque,
                  counts: "_Counts") -> bool:
        """Tell a proposal that needs no measurement (excluded, known, in flight, or another
        run's); False when it is to be measured."""
        reason = self.space.violation(config)
        if reason is not None:
            self._tell_excluded(trial, config, reason)
            counts.excluded += 1
        elif SearchSpace.key(config) in self._seen:
            self._tell_duplicate(trial, config)
            counts.duplicates += 1
        elif any(SearchSpace.key(c) == SearchSpace.key(config) for _, c in pending):
            self._tell_duplicate_in_batch(trial, config)
            counts.duplicates += 1
        elif not self._still_ours(trial, config):
            counts.duplicates += 1
        else:
            return False
        return True

    def _compile_forecast(self) -> None:
        """Hand the sampler's forecast of its next proposals to a benchmarker that compiles ahead,
        in front of what it compiles in spare time already: a proposal the pool has not compiled
        waits about a second for it (on an H100, 24-27 such waits took 10-24 s of a tune)."""
        forecast = getattr(self.study.sampler, "forecast", None)
        if forecast and isinstance(self.bench, Speculating):
            self.bench.speculate([(c, self.M) for c in forecast], first=True)

    def _stop_if_asked(self) -> None:
        """Stop between trials when asked (proposals in flight are failed on the way out)."""
        if self.should_stop():
            raise KeyboardInterrupt

    # -- the shared study ------------------------------------------------------------------------
    def _look(self) -> Optional[StopReason]:
        """Read the study (other runs write to it too): why to stop, or None and the room left."""
        trials = self.study.get_trials(deepcopy=False)
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if running and recover_interrupted(self.study, running):
            trials = self.study.get_trials(deepcopy=False)
            running = [t for t in trials if t.state == TrialState.RUNNING]
        records = [record_of(t) for t in trials
                   if t.state in MEASURED and t.user_attrs.get(TrialAttr.MEASURED)]
        self._seen = {SearchSpace.key(r.config): r for r in records}
        self._room = self.budget - len(records) - len(running)
        if len(records) >= self.budget:
            return StopReason.BUDGET
        # The exhaustive grid measures everything: patience would cut a recorded table short.
        if (self.patience and not self.exhaustive
                and _since_improvement(records) >= self.patience and not self._polish(records)):
            return StopReason.PATIENCE
        if self.stop_when is not None and self.stop_when(records):
            return StopReason.STOP_RULE
        if self._space_exhausted():
            return StopReason.SPACE_EXHAUSTED
        return StopReason.SHARED if self._room <= 0 else None

    def _polish(self, records: list[Record]) -> bool:
        """Before a patience stop: queue the best config's unmeasured GROUP_SIZE_M variants; True
        while any is left to measure.

        The GP takes them for near-copies of the best (group_correlation) and seldom proposes
        them, yet they differ by more than 1%: qwen3-30B fp8 M=1 on an H200, GROUP_SIZE_M 32 re-timed
        at 25.87 us against GROUP_SIZE_M 1's 26.12 (the tune's pick) in a grid of 952 configs.
        """
        best = min((r for r in records if r.candidate), key=lambda r: r.us, default=None)
        if best is None or self._room <= 0:
            return False
        unmeasured = [c for c in self.space.group_variants(best.config)
                      if SearchSpace.key(c) not in self._seen]
        self._enqueue(("polish", c) for c in unmeasured)  # skips those already queued
        return bool(unmeasured)

    def _ask(self) -> Optional[optuna.Trial]:
        """A new trial stamped as this run's (None if another run failed it before we could)."""
        trial = self.study.ask()
        try:
            stamp(trial)
        except UpdateFinishedTrialError:
            return None  # we were so slow that another run took it for a dead run's
        return trial

    def _still_ours(self, trial: optuna.Trial, config: Config) -> bool:
        """Whether to measure this trial, given what other runs sharing the study are doing.

        It gives way (told failed, unmeasured) when the trials ahead of it already fill the
        budget (two runs asked for the last slot at once), and is answered from the study when
        another run has measured or is measuring the same config: both trials wrote their
        parameters before looking, so at least one of the two sees the other.
        """
        trials = self.study.get_trials(deepcopy=False)
        done = sum(1 for t in trials if t.state in MEASURED and t.user_attrs.get(TrialAttr.MEASURED))
        ahead = sum(1 for t in trials if t.number < trial.number
                    and t.state in (TrialState.RUNNING, TrialState.WAITING))
        if done + ahead >= self.budget:
            self._abandon(trial, config, TrialAttr.GAVE_WAY, "the budget is held by other trials")
            return False
        key = SearchSpace.key(config)
        for t in trials:
            other = self.space.trial_config(t)
            if t.number == trial.number or other is None or SearchSpace.key(other) != key:
                continue
            if t.state == TrialState.RUNNING:
                self._abandon(trial, config, TrialAttr.DUPLICATE_OF_RUNNING, t.number)
                return False
            if t.state in MEASURED and t.user_attrs.get(TrialAttr.MEASURED):
                self._seen[key] = record_of(t)
                self._tell_duplicate(trial, config)
                return False
        return True

    def _abandon(self, trial: optuna.Trial, config: Optional[Config], why: str,
                 value: object) -> None:
        try:
            if config is not None:
                trial.set_user_attr(TrialAttr.CONFIG, config)
            trial.set_user_attr(why, value)
            self.study.tell(trial, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):
            pass  # already failed by another run

    # -- proposals -------------------------------------------------------------------------------
    def _enqueue(self, warm_starts: Iterable[tuple[str, Mapping[str, int]]]) -> list[Config]:
        """Queue the warm starts not measured or queued yet; return the configs queued."""
        queued: list[Config] = []
        waiting = {SearchSpace.key(c) for c in map(self.space.trial_config, self.study.get_trials(
            deepcopy=False, states=(TrialState.WAITING,))) if c is not None}
        for source, config in warm_starts:
            config = {k: int(config[k]) for k in self.space.params}
            key = SearchSpace.key(config)
            if (key in self._seen or key in waiting or not self.space.contains(config)
                    or self.space.violation(config)):
                continue
            self.study.enqueue_trial(self.space.encode(config), user_attrs={TrialAttr.SOURCE: source})
            waiting.add(key)
            queued.append(config)
        return queued

    def _enqueue_next_in_grid(self, pending) -> None:
        if self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return
        # Configs in flight here or measured by another run right now are not queued again.
        in_flight = {SearchSpace.key(c) for _, c in pending}
        in_flight |= {SearchSpace.key(c) for c in map(self.space.trial_config, self.study.get_trials(
            deepcopy=False, states=(TrialState.RUNNING,))) if c is not None}
        for config in self.space.configs():
            key = SearchSpace.key(config)
            if key not in self._seen and key not in in_flight:
                self.study.enqueue_trial(self.space.encode(config), user_attrs={TrialAttr.SOURCE: "grid"})
                return

    def _space_exhausted(self) -> bool:
        return len(self._seen) >= self.space.size()

    # -- telling -----------------------------------------------------------------------------------
    def _tell_excluded(self, trial: optuna.Trial, config: Config, reason: str) -> None:
        trial.set_user_attr(TrialAttr.CONFIG, config)
        trial.set_user_attr(TrialAttr.EXCLUDED, reason)
        trial.set_constraint(FEASIBILITY, 1.0)
        self.study.tell(trial, math.inf)

    def _tell_duplicate(self, trial: optuna.Trial, config: Config) -> None:
        known = self._seen[SearchSpace.key(config)]
        trial.set_user_attr(TrialAttr.CONFIG, config)
        trial.set_user_attr(TrialAttr.DUPLICATE_OF, known.number)
        trial.set_constraint(FEASIBILITY, 0.0 if known.ok else 1.0)
        if known.pruned:
            trial.report(known.us, 0)  # type: ignore[arg-type]
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, known.us if known.ok else math.inf)

    def _tell_duplicate_in_batch(self, trial: optuna.Trial, config: Config) -> None:
        # Its twin is in flight, not measured yet: nothing to copy, so it tells nothing.
        trial.set_user_attr(TrialAttr.CONFIG, config)
        self.study.tell(trial, state=TrialState.FAIL)

    def _measure_and_tell(self, trial: optuna.Trial, config: Config) -> Optional[Record]:
        """Measure and tell; None when another run failed the trial meanwhile (it is dropped)."""
        pruned = False
        screening = self._screening()
        try:
            with Heartbeat(trial), (self.bench.visit(config, self.M) if screening  # type: ignore
                                    else nullcontext()):
                m = self._first_look(trial, config) if screening else None
                if m is not None and m.ok and trial.should_prune():
                    pruned = True
                elif m is None or m.ok:  # a failed look is the result: the config does not run
                    m = self.bench.measure(config, self.M)
        except UpdateFinishedTrialError as exc:  # the look's report came too late
            return self._dropped(trial, exc)
        except BaseException:
            # Ctrl-C or a bug: the trial is abandoned, not left RUNNING.
            self._abandon(trial, None, TrialAttr.ABANDONED, "interrupted")
            raise
        try:
            _set_measurement_attrs(trial, config, m)
            if pruned:
                self.study.tell(trial, state=TrialState.PRUNED)
            else:
                self.study.tell(trial, m.us if m.ok else math.inf)
        except (UpdateFinishedTrialError, ValueError) as exc:
            return self._dropped(trial, exc)
        record = Record(number=trial.number, config=config, us=m.us if m.ok else None,
                        spread=m.spread, infeasible=m.infeasible,
                        source=trial.user_attrs.get(TrialAttr.SOURCE, "sampler"), pruned=pruned)
        self._seen[SearchSpace.key(config)] = record
        return record

    def _dropped(self, trial: optuna.Trial, exc: Exception) -> None:
        log.warning("trial %d of %s was failed by another run while measured (%s); its "
                    "measurement is dropped", trial.number, self.study.study_name, exc)

    def _screening(self) -> bool:
        """A cheap first look before each measurement: with a pruner and a benchmarker that can."""
        return (not isinstance(self.study.pruner, optuna.pruners.NopPruner)
                and isinstance(self.bench, Screening))

    def _first_look(self, trial: optuna.Trial, config: Config) -> Measurement:
        """The benchmarker's cheap first look, reported to the pruner."""
        look = self.bench.screen(config, self.M)  # type: ignore[attr-defined]
        if look.ok:
            trial.set_user_attr(TrialAttr.FIRST_LOOK_US, look.us)
            trial.report(look.us, 0)  # type: ignore[arg-type]
        return look


@dataclass
class _Counts:
    """What this run did with its proposals."""

    new: int = 0  # measured
    excluded: int = 0  # broke the space's constraints
    duplicates: int = 0  # answered from the study


def _set_measurement_attrs(trial: optuna.Trial, config: Config, m: Measurement) -> None:
    trial.set_user_attr(TrialAttr.CONFIG, config)
    trial.set_user_attr(TrialAttr.MEASURED, True)
    trial.set_user_attr(TrialAttr.SPREAD, m.spread)
    trial.set_constraint(FEASIBILITY, 0.0 if m.ok else 1.0)
    if m.ok:
        trial.set_user_attr(TrialAttr.US, m.us)
    else:
        trial.set_user_attr(TrialAttr.INFEASIBLE, m.infeasible)
    if m.verified is not None:
        trial.set_user_attr(TrialAttr.VERIFIED, m.verified)


def _since_improvement(records: list[Record]) -> int:
    """Measurements since the best last improved by at least MIN_IMPROVEMENT."""
    best = math.inf
    since = 0
    for r in records:
        if r.candidate and r.us < best * (1 - MIN_IMPROVEMENT):  # type: ignore[operator]
            best = r.us  # type: ignore[assignment]
            since = 0
        else:
            since += 1
    return since
