"""Stopping a run at a safe point: Ctrl-C, SIGTERM (Slurm, `kill`), and steps that must not be cut.

The first Ctrl-C (or SIGTERM) sets STOP; the bucket loop and the tuner check it between trials,
so the trial in flight finishes and is stored. A second Ctrl-C raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import sys
import threading

# Set by the first Ctrl-C or SIGTERM: the run stops at the next safe point (see graceful_stop).
STOP = threading.Event()


@contextlib.contextmanager
def graceful_stop(quiet: bool = False):
    """The first Ctrl-C (or SIGTERM, as Slurm and `kill` send) lets the trial in flight finish and
    stops at the next safe point; a second Ctrl-C stops at once (the trial in flight is failed).

    A KeyboardInterrupt raised at an arbitrary point can land in a garbage-collector callback,
    where Python swallows it; checking a flag at safe points cannot be lost.

    The handler takes no lock: it runs in the main thread between any two bytecodes, also while
    that thread holds STOP's own lock (inside STOP.wait), where STOP.set() would wait for itself
    forever (a worker hung that way after Ctrl-C). It queues the signal (SimpleQueue.put is
    reentrant) for a relay thread that sets STOP and says so.
    """
    signals: queue.SimpleQueue = queue.SimpleQueue()

    def relay() -> None:
        while signals.get() is not None:
            if not STOP.is_set() and not quiet:
                print("autotune: stopping after the trial in flight (Ctrl-C again to stop now)",
                      file=sys.stderr, flush=True)
            STOP.set()

    def first(signum, frame):
        signals.put(signum)
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    STOP.clear()
    try:
        previous = {s: signal.signal(s, first) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    relay_thread = threading.Thread(target=relay, name="autotune-stop-relay", daemon=True)
    relay_thread.start()
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        signals.put(None)
        relay_thread.join()


def stop_requested() -> bool:
    return STOP.is_set()


def check_stop() -> None:
    """At a safe point: leave through the interrupted path if a stop was asked for."""
    if STOP.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def uninterrupted():
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
