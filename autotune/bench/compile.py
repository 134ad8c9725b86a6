"""Ahead-of-time compilation of candidate configs in a pool of worker processes.

A Triton compile costs about a second of CPU per config, several times the GPU time of timing
it. The study hands the benchmarker its next configs (`prepare`); this pool compiles them in
parallel while the measuring worker times others, and Triton's on-disk cache lets the measuring
worker load the binaries instead of compiling. Compiling does not launch anything: the GPU stays
free for the measurements.

Besides the configs asked for next, the pool takes a ranked list of configs that may be asked for
later (`speculate`) and compiles them with its spare workers, a few workers kept free so a config
asked for now never queues behind them. The GEMM kernels do not depend on the batch size except
through vLLM's small-M shortcut, so a binary compiled for one bucket serves the others.

The pool's processes are forked from a server that has imported torch, Triton and the kernels
once (bench/server.py).

A compile error here is counted, not final: the measuring worker decides whether a config runs.
Two threads may use the pool at once (the search, and the re-timing alongside it).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable, Mapping, Optional

from autotune.bench.server import server_context
from autotune.bench.timing import TimerSpec, runtime_config
from autotune.lifetime import die_with_parent
from autotune.problem.space import SearchSpace

# Workers kept free of speculative compiles, for the configs the study asks for now.
RESERVED_WORKERS = 2

_compiler = None  # per worker process: the buffers that give the kernel its argument types
_spec: Optional[TimerSpec] = None


def _init_worker(spec: TimerSpec) -> None:
    global _compiler, _spec
    die_with_parent()  # the pool's processes end with the benchmarker's process
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the tuner's to handle
    from autotune.kernel import MoECompiler

    _spec = spec
    _compiler = MoECompiler(spec.E, spec.N, spec.K, spec.topk, spec.dtype, spec.block_shape)


def _started() -> None:
    """Nothing: the worker's initializer has run."""


def _compile(config: dict, M: int) -> tuple[float, Optional[str]]:
    """Seconds spent and the error, if the config does not compile."""
    start = time.perf_counter()
    try:
        _compiler.compile(runtime_config(config, _spec), M)
    except Exception as exc:  # noqa: BLE001 - a compile error is a result, not a crash
        text = str(exc).strip().splitlines()
        return time.perf_counter() - start, f"{type(exc).__name__}: {text[0] if text else ''}"
    return time.perf_counter() - start, None


class CompilePool:
    """Compiles configs ahead; `wait` tells how long the caller sat idle for one."""

    def __init__(self, spec: TimerSpec, workers: int):
        self.spec = spec
        self.workers = workers
        self._pool: Optional[ProcessPoolExecutor] = None
        self._futures: dict[tuple, Future] = {}
        self._counted: set[tuple] = set()
        # Speculative lists, best first: one per thread that speculates (each bucket loop).
        self._later: dict[int, deque[tuple[dict, int]]] = {}
        self._speculating: list[Future] = []
        self.compile_seconds = 0.0  # CPU time of compiles, summed over workers
        self.compiled = 0
        self.compile_errors = 0  # configs it could not compile, each counted once
        self._lock = threading.RLock()  # the bookkeeping above, never held while waiting

    def start(self) -> None:
        """Start every worker process now: each imports torch and Triton (seconds) while the run
        starts up, instead of when the first configs are asked for."""
        if self.workers <= 0:
            return
        with self._lock:
            for _ in range(self.workers):  # a task no worker is free for spawns one
                self._executor().submit(_started)

    def submit(self, configs: Iterable[Mapping[str, int]], M: int) -> None:
        if self.workers <= 0:
            return
        with self._lock:
            for config in configs:
                self._submit(config, M)
            self._speculate_more()

    def speculate(self, candidates: Iterable[tuple[Mapping[str, int], int]],
                  first: bool = False) -> None:
        """Compile these (config, M) pairs, likeliest first, with spare workers; replaces the
        calling thread's previous list, or goes in front of what is left of it (first=True).
        The lists of two threads (two bucket loops) are compiled in turn."""
        if self.workers <= 0:
            return
        with self._lock:
            new = [(dict(c), M) for c, M in candidates if self._key(c, M) not in self._futures]
            mine = threading.get_ident()
            if first:
                keys = {self._key(c, M) for c, M in new}
                new += [(c, M) for c, M in self._later.get(mine, ())
                        if self._key(c, M) not in keys]
            self._later[mine] = deque(new)
            self._speculate_more()

    def wait(self, config: Mapping[str, int], M: int) -> tuple[float, Optional[str]]:
        """Block until the config is compiled: (seconds waited, compile error or None)."""
        if self.workers <= 0:
            return 0.0, None
        key = self._key(config, M)
        with self._lock:
            future = self._submit(config, M)
        start = time.perf_counter()
        try:
            seconds, error = future.result()
        except BrokenProcessPool:
            # A compiler crash takes the pool down: start a new one (unless the other thread
            # has); the measuring worker will compile this config itself if it can.
            with self._lock:
                if self._futures.get(key) is future:
                    self._pool = None
                    self._futures.clear()
                    self._speculating.clear()
            return time.perf_counter() - start, None
        waited = time.perf_counter() - start
        with self._lock:
            if key not in self._counted:
                self._counted.add(key)
                self.compile_seconds += seconds
                self.compiled += 1
                self.compile_errors += bool(error)
            self._speculate_more()
        return waited, error

    def _key(self, config: Mapping[str, int], M: int) -> tuple:
        """Configs compile to the same kernels at every M but across vLLM's small-M shortcut."""
        from autotune.kernel.align import use_naive_assignment

        return SearchSpace.key(config), use_naive_assignment(M * self.spec.topk, self.spec.E, None)

    def _submit(self, config: Mapping[str, int], M: int) -> Future:
        """The config's compile, started now unless it already was."""
        key = self._key(config, M)
        if key not in self._futures:
            self._futures[key] = self._executor().submit(_compile, dict(config), M)
        return self._futures[key]

    def _speculate_more(self) -> None:
        """Keep the spare workers busy with the speculative list."""
        self._speculating = [f for f in self._speculating if not f.done()]
        spare = self.workers - RESERVED_WORKERS
        while len(self._speculating) < spare:
            lists = [later for later in self._later.values() if later]
            if not lists:
                return
            for later in lists:  # one from each list in turn
                config, M = later.popleft()
                if self._key(config, M) not in self._futures:
                    self._speculating.append(self._submit(config, M))
                    if len(self._speculating) >= spare:
                        return

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            # wait=True: the compiles still running take a second or two, and a pool left to
            # wind down after wait=False keeps a spawned process (a `workers=N` worker) from
            # ever exiting: its exit joins the pool's processes, which then never get told to stop.
            pool.shutdown(wait=True, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=server_context(),
                                             initializer=_init_worker, initargs=(self.spec,))
        return self._pool
