"""Child processes end with the process that started them, however it ends.

A run's children (the `workers=N` workers, the measuring worker, the compile pool's processes)
must never outlive it: an orphaned measurer goes on timing on a GPU that the user's rerun then
shares, and writes into the same studies. A child calls `die_with_parent()` first thing; two
guards then end it when its parent is gone:

- Linux's PR_SET_PDEATHSIG: the kernel sends SIGKILL at the parent's exit, whatever the cause
  (kill -9, the OOM killer, a crash). It fires when the parent's *thread* that started the child
  ends, so children are started from threads that live as long as the process: the main one, and
  `lifelong_thread`s (the re-timing of finished buckets, run/settler.py; the second bucket loop,
  run/buckets.py).
- A thread waiting on multiprocessing's parent sentinel (a pipe the kernel closes when the parent
  dies), for what the first misses: a parent that died before the child set it, and systems
  without prctl.

SIGKILL, not a graceful stop: the trial a killed child was measuring is left RUNNING, and the next
run fails it as its owner's (storage.is_dead), as for any killed run.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import wait

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_threads: dict[str, ThreadPoolExecutor] = {}
_threads_lock = threading.Lock()


def lifelong_thread(name: str) -> ThreadPoolExecutor:
    """The process's one thread of this name, for its whole life, never shut down: processes it
    starts (a measuring worker replaced after a fault, compile processes) are killed by the
    kernel when the thread that started them ends, so it must outlive them, as the main thread
    does."""
    with _threads_lock:
        if name not in _threads:
            _threads[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        return _threads[name]


def die_with_parent() -> None:
    """End this process (SIGKILL) as soon as its parent process is gone."""
    _ask_kernel()
    parent = multiprocessing.parent_process()
    if parent is None:  # not started by multiprocessing: only the kernel's guard
        return
    if not parent.is_alive():  # it died before the kernel was asked
        _die()
    threading.Thread(target=_watch, args=(parent.sentinel,), name="parent-watch",
                     daemon=True).start()


def _ask_kernel() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the sentinel thread still watches
        pass


def _watch(sentinel: int) -> None:
    wait([sentinel])  # returns when the parent's end of the pipe is closed: it exited
    _die()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
