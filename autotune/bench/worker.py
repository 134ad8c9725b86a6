"""The measuring worker: a child process that owns the device, restarted when a config kills it.

A CUDA fault (illegal address, launch failure) poisons the whole process's CUDA context, and a
hung kernel never returns. So every measurement runs in a child process: the parent sends one
request at a time over a pipe and waits with a timeout; if the child dies or hangs, the parent
kills it, answers the request as infeasible with the reason, and starts a fresh child for the
next one. The tuner process never touches the GPU.

The child is a fresh interpreter (spawned: a process that has used CUDA cannot be forked), or,
with `forked=True`, forked from the benchmarker's server (bench/server.py), which never touches
CUDA and has torch, Triton and the kernels imported already: ready in a fraction of a second
instead of seconds, at the start and after every fault. It builds its `Timer` from a picklable
spec, so this module imports neither torch nor Triton.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from autotune.bench.server import server_context
from autotune.errors import first_line
from autotune.lifetime import die_with_parent

# What the child runs: spec -> an object with methods named by the requests ("measure", ...).
TimerFactory = Callable[[Any], Any]


@dataclass
class WorkerStats:
    restarts: int = 0
    faults: list[str] = field(default_factory=list)  # reasons the child was replaced
    start_wait_seconds: float = 0.0  # calls waited this long for a child to be ready


class WorkerDied(Exception):
    """The child died or hung while answering; it has been replaced."""


class MeasuringWorker:
    """Parent side: one child at a time, requests answered in order."""

    def __init__(self, factory: TimerFactory, spec: Any, *, env: Optional[dict] = None,
                 timeout_s: float = 120.0, start_timeout_s: float = 300.0, forked: bool = False):
        if forked and env:
            raise ValueError("a forked worker has the server's environment: spawn it to set env")
        self.factory = factory
        self.spec = spec
        self.env = env or {}
        self.forked = forked
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.stats = WorkerStats()
        self._proc: Optional[mp.process.BaseProcess] = None
        self._conn = None
        self._ready = False  # the child has built its timer

    def call(self, op: str, *args: Any, timeout_s: Optional[float] = None) -> Any:
        """Run `timer.op(*args)` in the child; raises WorkerDied if the child faults or hangs.

        Exceptions the timer raises (a compile error, out of resources) come back as
        RuntimeError with the child's message; the child stays alive for those.
        """
        self._ensure_started()
        wait = timeout_s or self.timeout_s
        try:
            self._conn.send((op, args))
            if not self._conn.poll(wait):
                raise self._replace(f"hung: no answer within {wait:.0f} s")
            status, payload = self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(timeout=5)  # let the exit code arrive
            raise self._replace(f"worker process died (exit code {self._proc.exitcode})") from None
        if status == "ok":
            return payload
        if status == "fatal":  # the CUDA context is poisoned: the child exits after answering
            raise self._replace(payload)
        raise RuntimeError(payload)

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            self._conn.send(("exit", ()))
            self._proc.join(timeout=10)
        except (OSError, BrokenPipeError):
            pass
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._proc, self._conn, self._ready = None, None, False

    def start(self) -> None:
        """Start the child now without waiting for it, so that its start-up (imports, CUDA, the
        timer's inputs: seconds) overlaps the caller's; the first call waits for it."""
        if self._proc is None:
            self._launch()

    # -- child lifecycle -------------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._proc is not None and self._ready and self._proc.is_alive():
            return
        if self._proc is None or self._ready:  # none yet, or the ready one has died
            self._launch()
        self._await_ready()

    def _launch(self) -> None:
        ctx = server_context() if self.forked else mp.get_context("spawn")
        parent, child = ctx.Pipe()
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)  # the spawned interpreter inherits the environment
        try:
            proc = ctx.Process(target=_serve, args=(child, self.factory, self.spec), daemon=True)
            proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self._proc, self._conn, self._ready = proc, parent, False

    def _await_ready(self) -> None:
        started = time.perf_counter()
        try:
            answered = self._conn.poll(self.start_timeout_s)
            status, payload = self._conn.recv() if answered else ("hung", None)
        except (EOFError, OSError):
            status, payload = "died", None
        finally:
            self.stats.start_wait_seconds += time.perf_counter() - started
        if status == "ready":
            self._ready = True
            return
        proc, self._proc, self._conn = self._proc, None, None
        if status == "hung":
            proc.kill()
        proc.join()
        if status == "error":
            raise RuntimeError(f"worker failed to start: {payload}")
        raise WorkerDied("worker did not start" if status == "hung"
                         else f"worker process died while starting (exit code {proc.exitcode})")

    def _replace(self, reason: str) -> WorkerDied:
        """Kill the child (the next call starts a fresh one); the error to raise."""
        self.stats.restarts += 1
        self.stats.faults.append(reason)
        if self._proc is not None:
            self._proc.kill()
            self._proc.join()
        self._proc, self._conn, self._ready = None, None, False
        return WorkerDied(reason)


def _serve(conn, factory: TimerFactory, spec: Any) -> None:
    """Child side: build the timer, then answer requests until told to exit."""
    die_with_parent()  # never measure on for a tuner that is gone
    # Ctrl-C reaches the whole process group: the parent decides, the child finishes its answer.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        timer = factory(spec)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            op, args = conn.recv()
        except EOFError:
            return
        if op == "exit":
            return
        try:
            conn.send(("ok", getattr(timer, op)(*args)))
        except Exception as exc:  # noqa: BLE001
            message = f"{type(exc).__name__}: {first_line(exc)}"
            if poisons_context(exc):
                conn.send(("fatal", message))
                return
            conn.send(("error", message))
        except BaseException:  # pragma: no cover - interpreter shutting down
            traceback.print_exc()
            return


# CUDA errors after which the context cannot be used again.
_STICKY = ("illegal memory access", "illegal address", "unspecified launch failure",
           "misaligned address", "device-side assert", "an illegal instruction",
           "CUDA error: unknown error", "uncorrectable ECC error")


def poisons_context(exc: BaseException) -> bool:
    text = str(exc)
    return any(s in text for s in _STICKY)
