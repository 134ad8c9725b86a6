"""Ahead-of-time compilation of candidate configs in a pool of worker processes.

A Triton compile costs about a second of CPU per config, several times the GPU time of timing
it. The study hands the benchmarker its next configs (`prepare`); this pool compiles them in
parallel while the measuring worker times others, and Triton's on-disk cache lets the measuring
worker load the binaries instead of compiling. Compiling does not launch anything: the GPU stays
free for the measurements.

A compile error here is counted, not final: the measuring worker decides whether a config runs.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable, Mapping, Optional

from autotune.bench.timing import TimerSpec, runtime_config
from autotune.space import SearchSpace

_compiler = None  # per worker process: the buffers that give the kernel its argument types
_spec: Optional[TimerSpec] = None


def _init_worker(spec: TimerSpec) -> None:
    global _compiler, _spec
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the tuner's to handle
    from autotune.kernel import MoECompiler

    _spec = spec
    _compiler = MoECompiler(spec.E, spec.N, spec.K, spec.topk, spec.dtype, spec.block_shape)


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
        self.compile_seconds = 0.0  # CPU time of compiles, summed over workers
        self.compiled = 0

    def submit(self, configs: Iterable[Mapping[str, int]], M: int) -> None:
        if self.workers <= 0:
            return
        for config in configs:
            key = SearchSpace.key(config)
            if key not in self._futures:
                self._futures[key] = self._executor().submit(_compile, dict(config), M)

    def wait(self, config: Mapping[str, int], M: int) -> tuple[float, Optional[str]]:
        """Block until the config is compiled: (seconds waited, compile error or None)."""
        if self.workers <= 0:
            return 0.0, None
        key = SearchSpace.key(config)
        if key not in self._futures:
            self.submit([config], M)
        start = time.perf_counter()
        try:
            seconds, error = self._futures[key].result()
        except BrokenProcessPool:
            # A compiler crash takes the pool down: start a new one; the measuring worker will
            # compile this config itself if it can.
            self._pool = None
            self._futures.clear()
            return time.perf_counter() - start, None
        waited = time.perf_counter() - start
        if key not in self._counted:
            self._counted.add(key)
            self.compile_seconds += seconds
            self.compiled += 1
        return waited, error

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                             mp_context=mp.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.spec,))
        return self._pool
