"""Where a run's wall time goes, by phase: timed where the work is done, summed per process.

A phase nested in another (a bucket's re-timing inside the bucket loop) counts for itself only,
so the phases add up to the time they cover. Start-up is the time from the process's start
(interpreter, imports, the plan, CUDA, the measuring worker) to the first bucket; for a later job
of a multirun sweep, from when that job began. Each process has its own clock: with workers=N
the parent's search is its workers' whole run.

Work a background thread does while the phases go on (re-timing alongside the search:
run/settler.py; the second bucket loop: run/buckets.py) is timed apart, as ALONGSIDE and
LOOP_ALONGSIDE: it overlaps the phases, so it is not one of them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional

log = logging.getLogger(__name__)

# In the order a run goes through them (the report and the summary line keep it).
PHASES = ("start-up", "search", "re-timing", "correctness", "midpoints", "files", "report")
# Waits inside the search and re-timing, by the benchmarker's statistic that counts them.
WAITS = {"compile wait": "compile_wait_seconds", "worker start": "worker_start_wait_seconds"}
# A background thread's work during the search (the re-timing of finished buckets).
ALONGSIDE = "re-timing alongside"
# The second bucket loop's search, in a thread of its own (run/buckets.py).
LOOP_ALONGSIDE = "larger buckets alongside"

_seconds: dict[str, float] = {}
_stack: list[list] = []  # [name, time the innermost phase last resumed]; the main thread's
_background = threading.local()  # .active: this thread's phases count as ALONGSIDE
_lock = threading.Lock()
_steps: list[tuple[str, float]] = []  # (start-up step, the run's age when it was done)
# When this run began, if not with the process: a later job of a multirun sweep.
_origin: Optional[float] = None
_runs = 0  # runs begun in this process (begin_run)


def begin_run() -> None:
    """A command-line run (one job of a sweep) begins: its clock starts now, or with the process
    for the first."""
    global _origin, _runs
    reset()
    _steps.clear()
    _origin = time.monotonic() if _runs else None
    _runs += 1


def reset() -> None:
    """A new run in this process: forget the phases of an earlier one."""
    _seconds.clear()
    _stack.clear()


def start_up_step(name: str) -> None:
    """A step of the start-up is done (the imports, the plan, ...): logged with the others when
    the first bucket begins."""
    age = run_age()
    if age is not None and "start-up" not in _seconds:
        _steps.append((name, age))


def mark_started() -> None:
    """The run's first bucket begins: what the run spent until now is its start-up."""
    if "start-up" not in _seconds:
        age = run_age()
        _seconds["start-up"] = age if age is not None else 0.0
        if age is not None and _steps:
            ends = [*_steps, ("the rest", age)]
            log.info("start-up %.1f s: %s", age, ", ".join(
                f"{name} {end - before:.1f}" for (name, end), before
                in zip(ends, [0.0] + [end for _, end in ends])))
        _steps.clear()


@contextmanager
def phase(name: str) -> Iterator[None]:
    if getattr(_background, "active", False):  # counted whole by `alongside`
        yield
        return
    now = time.monotonic()
    if _stack:
        outer = _stack[-1]
        _seconds[outer[0]] = _seconds.get(outer[0], 0.0) + now - outer[1]
    _stack.append([name, now])
    try:
        yield
    finally:
        now = time.monotonic()
        _, resumed = _stack.pop()
        _seconds[name] = _seconds.get(name, 0.0) + now - resumed
        if _stack:
            _stack[-1][1] = now


@contextmanager
def alongside(name: str = ALONGSIDE) -> Iterator[None]:
    """This thread's work overlaps the phases of the run's own thread: the whole block counts as
    `name` (ALONGSIDE, LOOP_ALONGSIDE), the phases inside it not at all."""
    _background.active = True
    start = time.monotonic()
    try:
        yield
    finally:
        _background.active = False
        with _lock:
            _seconds[name] = _seconds.get(name, 0.0) + time.monotonic() - start


@contextmanager
def waiting_for_background(name: str) -> Iterator[None]:
    """The run's own thread waits, in phase `name`, for the background's work to end: that work
    overlaps no phase any more, so its time counts in `name`, not as ALONGSIDE."""
    start = time.monotonic()
    with phase(name):
        yield
    with _lock:  # the background's last work was counted before the wait could end
        if ALONGSIDE in _seconds:
            _seconds[ALONGSIDE] = max(0.0, _seconds[ALONGSIDE] - (time.monotonic() - start))


def seconds() -> dict[str, float]:
    """The phases timed so far, in run order, ALONGSIDE if any, and the process's age as
    `total`."""
    out = {p: round(_seconds[p], 2) for p in (*PHASES, ALONGSIDE, LOOP_ALONGSIDE)
           if p in _seconds}
    age = run_age()
    if age is not None:
        out["total"] = round(age, 2)
    return out


def run_age() -> Optional[float]:
    """Seconds since this run began: the process's age, or since a sweep's later job began."""
    return time.monotonic() - _origin if _origin is not None else process_age()


def process_age() -> Optional[float]:
    """Seconds since this process started (Linux: /proc), None where that cannot be read."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
