"""The GPU benchmarker: CUDA-graph timing in a restartable worker, compiles done ahead in a pool.

The tuner process holds no CUDA context. `measure` waits for the config's compile (reported in
`stats`; the GPU idles then unless the re-timing alongside measures: `IdleClock`), then asks the
measuring worker to time it. A config that fails to compile, runs out of resources, faults or
hangs comes back as an infeasible `Measurement` with its reason; a faulted worker has already
been replaced. `screen` takes a first look at a config, and `visit` keeps the worker for the
measurement that follows it.

Two threads may measure at once: the bucket loop's search, and the re-timing of the bucket
before alongside it (run/settler.py). The worker answers one request at a time, in turn; its time
counts from when a request has the worker, not from when it began to wait for it.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

from autotune.bench.compile import CompilePool
from autotune.bench.protocol import BenchStats, Measurement, OutOfContest, measure_interleaved
from autotune.bench.timing import TimerSpec, make_gpu_timer
from autotune.bench.worker import MeasuringWorker, WorkerDied


class IdleClock:
    """The GPU's idle time: while a measurement waits for its compile and the measuring worker
    has no request. With the re-timing alongside, one thread's compile wait is often the other's
    measurement; the sum of the waits would count that as idle."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.seconds = 0.0
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting = 0  # threads waiting for a compile
        self._measuring = 0
        self._since: Optional[float] = None  # when the current idle stretch began

    def waiting(self):
        return self._during(waiting=1)

    def measuring(self):
        return self._during(measuring=1)

    @contextmanager
    def _during(self, waiting: int = 0, measuring: int = 0) -> Iterator[None]:
        self._step(waiting, measuring)
        try:
            yield
        finally:
            self._step(-waiting, -measuring)

    def _step(self, waiting: int = 0, measuring: int = 0) -> None:
        with self._lock:
            now = self._clock()
            if self._since is not None:
                self.seconds += now - self._since
            self._waiting += waiting
            self._measuring += measuring
            self._since = now if self._waiting and not self._measuring else None


class WorkerBenchmarker:
    """Shared by the GPU and interpreter benchmarkers: a worker, maybe a compile pool."""

    kind = "worker"

    def __init__(self, worker: MeasuringWorker, identity: dict[str, Any],
                 compiler: Optional[CompilePool] = None, rounds_in_worker: bool = True):
        self.worker = worker
        self._identity = identity
        self.compiler = compiler
        self.rounds_in_worker = rounds_in_worker
        self._stats = BenchStats()
        self.environment: dict[str, Any] = {}
        # One request to the worker at a time, and the stats with it; a visit holds it over several
        # requests.
        self._turn = threading.RLock()
        self._idle = IdleClock()

    def start(self) -> None:
        """Start the measuring worker and the compile pool now, so that their start-up overlaps
        the run's own (they are otherwise started by the first configs)."""
        self.worker.start()
        if self.compiler is not None:
            self.compiler.start()

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def default_buckets(self) -> Optional[list[int]]:
        return None

    def prepare(self, configs: Iterable[Mapping[str, int]], M: int) -> None:
        if self.compiler is not None:
            self.compiler.submit(configs, M)

    def speculate(self, candidates: Iterable[tuple[Mapping[str, int], int]],
                  first: bool = False) -> None:
        if self.compiler is not None:
            self.compiler.speculate(candidates, first=first)

    def measure(self, config: Mapping[str, int], M: int) -> Measurement:
        return self._request("measure", dict(config), M)

    def _request(self, op: str, config: dict, M: int) -> Measurement:
        self._wait_for_compile(config, M)
        with self._turn, self._idle.measuring():
            start = time.perf_counter()
            try:
                result = self.worker.call(op, config, M)
            except WorkerDied as exc:
                return self._failed(f"fault: {exc}")
            except RuntimeError as exc:
                return self._failed(str(exc))
            finally:
                self._stats.measure_seconds += time.perf_counter() - start
            return self._measurement(result, look=op == "screen")

    def screen(self, config: Mapping[str, int], M: int) -> Measurement:
        """A first look (`Screening`): a few replays of the graph a `measure` right after times."""
        return self._request("screen", dict(config), M)

    @contextmanager
    def visit(self, config: Mapping[str, int], M: int) -> Iterator[None]:
        """The worker for this thread alone, once the config is compiled: its look, the pruner's
        decision and its measurement are one visit, so the look's replays warm the measurement
        up (the re-timing alongside waits a few milliseconds more)."""
        self._wait_for_compile(dict(config), M)
        with self._turn:
            yield

    def measure_rounds(self, configs: Sequence[Mapping[str, int]], M: int, rounds: int,
                       out_of_contest: Optional[OutOfContest] = None) -> list[list[Measurement]]:
        """Interleaved rounds in one request: the worker captures each config's graph once
        and times every round (with `rounds_in_worker`; otherwise one `measure` per round, and
        configs out of the contest stop)."""
        if not self.rounds_in_worker:
            return measure_interleaved(self, configs, M, rounds, out_of_contest)
        configs = [dict(c) for c in configs]
        for config in configs:
            self._wait_for_compile(config, M)
        with self._turn, self._idle.measuring():
            start = time.perf_counter()
            try:
                answers = self.worker.call("measure_rounds", configs, M, rounds,
                                           timeout_s=self.worker.timeout_s * max(1, len(configs)))
            except (WorkerDied, RuntimeError):
                answers = None
            self._stats.measure_seconds += time.perf_counter() - start
            if answers is not None:
                return [[self._measurement(r) for r in a["rounds"]]
                        + ([self._failed(a["error"])] if a["error"] else []) for a in answers]
        # A config faulted (the worker has been replaced) or the request failed: one measurement
        # at a time tells which config it was, as in the search.
        return measure_interleaved(self, configs, M, rounds, out_of_contest)

    def verify(self, config: Mapping[str, int], M: int) -> Optional[bool]:
        """Does the config's output match the reference on this device (fresh random inputs)?"""
        try:
            with self._turn, self._idle.measuring():
                return bool(self.worker.call("verify", dict(config), M)["ok"])
        except (WorkerDied, RuntimeError):
            return False

    def stats(self) -> BenchStats:
        s = self._stats
        if self.compiler is not None:
            s.compile_seconds, s.compiled = self.compiler.compile_seconds, self.compiler.compiled
            s.compile_errors = self.compiler.compile_errors
        s.idle_seconds = self._idle.seconds
        s.worker_restarts = self.worker.stats.restarts
        s.worker_start_wait_seconds = self.worker.stats.start_wait_seconds
        s.faults = tuple(self.worker.stats.faults)
        return s

    def close(self) -> None:
        if self.compiler is not None:
            self.compiler.close()
        self.worker.close()

    def _wait_for_compile(self, config: dict, M: int) -> None:
        if self.compiler is not None:
            # The pool only gets binaries into Triton's cache early; whether a config runs is
            # decided by the measuring worker, which compiles itself what the pool could not.
            with self._idle.waiting():
                waited, _ = self.compiler.wait(config, M)
            with self._turn:
                self._stats.compile_wait_seconds += waited
        if not self.environment:
            with self._turn:
                self.environment = self.environment or self._call_environment()

    def _measurement(self, result: dict, look: bool = False) -> Measurement:
        if look:
            self._stats.looks += 1
        else:
            self._stats.measurements += 1
        return Measurement(us=result["us"], spread=result["spread"],
                           samples=tuple(result["samples"]),
                           method={**self._identity, **result["method"]})

    def _failed(self, reason: str) -> Measurement:
        self._stats.infeasible += 1
        return Measurement.failed(reason, **self._identity)

    def _call_environment(self) -> dict[str, Any]:
        try:
            return self.worker.call("environment")
        except (WorkerDied, RuntimeError) as exc:
            return {"error": str(exc)}


def timer_spec(plan) -> TimerSpec:
    s, b = plan.shape, plan.cfg.benchmark
    l2 = plan.device.l2_cache_mb
    return TimerSpec(E=s.E, N=s.N, K=s.K, topk=s.topk, dtype=s.dtype, block_shape=s.block_shape,
                     calls_per_graph=b.calls_per_graph, warmup_replays=b.warmup_replays,
                     replays=b.replays, steady_max_M=b.steady_max_M,
                     steady_warmup_replays=b.steady_warmup_replays, l2=b.l2, routing=b.routing,
                     routing_skew=b.routing_skew, seed=b.seed,
                     l2_cache_bytes=int((l2 or 50) * 2**20), swap_ab=b.swap_ab,
                     capability=plan.device.compute_capability, min_layers=b.min_layers)


def open_gpu_benchmarker(plan, timer: Callable[[TimerSpec], Any] = make_gpu_timer
                         ) -> WorkerBenchmarker:
    """timer: what the measuring worker builds to time configs (a picklable factory; tests give
    one whose kernel faults on purpose)."""
    b = plan.cfg.benchmark
    spec = timer_spec(plan)
    workers = b.compile_workers if b.compile_workers >= 0 else max(1, (os.cpu_count() or 2) - 2)
    worker = MeasuringWorker(timer, spec, timeout_s=b.measure_timeout_s,
                             forked=b.worker_from_server)
    bench = WorkerBenchmarker(worker, plan.benchmark_identity, CompilePool(spec, workers),
                              rounds_in_worker=b.rounds_in_worker)
    bench.start()  # CUDA's start-up and the compilers' imports, while the studies open
    return bench
