"""Which run owns a trial and whether it is still alive: owner stamps, heartbeats, failing dead
runs' trials."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from autotune.errors import first_line
from autotune.study.records import TrialAttr

log = logging.getLogger(__name__)


HEARTBEAT_S = 20  # a trial in flight is re-stamped this often
STALE_S = 120  # a trial of another machine with no heartbeat for this long is dead
OWNERLESS_GRACE_S = 5  # a live run stamps its trial within milliseconds of asking for it


# -- owners, heartbeats and dead trials ------------------------------------------------------------
def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _machine() -> str:
    """This machine and PID namespace: pids mean something only within it."""
    boot = _read("/proc/sys/kernel/random/boot_id")[:8]
    try:
        ns = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        ns = ""
    return f"{socket.gethostname()}/{boot}/{ns}"


def _start_time(pid: int) -> Optional[str]:
    """The process's start time (clock ticks since boot), telling a reused pid apart."""
    stat = _read(f"/proc/{pid}/stat")
    if stat:
        return stat.rsplit(")", 1)[1].split()[19]
    if Path("/proc/self/stat").exists():
        return None  # Linux, and no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "?"


MACHINE = _machine()
_started: dict[int, Optional[str]] = {}


def _my_start() -> Optional[str]:
    pid = os.getpid()  # keyed by pid: a forked child is another process
    if pid not in _started:
        _started[pid] = _start_time(pid)
    return _started[pid]


def owner_stamp() -> dict[str, Any]:
    return {"machine": MACHINE, "pid": os.getpid(), "start": _my_start(), "beat": time.time()}


def is_mine(owner: Any) -> bool:
    return (isinstance(owner, dict) and owner.get("machine") == MACHINE
            and owner.get("pid") == os.getpid() and owner.get("start") == _my_start())


def owner_alive(owner: dict[str, Any]) -> Optional[bool]:
    """True/False on this machine; None for another machine (only its heartbeat can tell)."""
    if owner.get("machine") != MACHINE:
        return None
    start = _start_time(int(owner.get("pid", -1)))
    return start is not None and (start == "?" or start == owner.get("start"))


def is_dead(trial: FrozenTrial, now: Optional[float] = None) -> bool:
    now = time.time() if now is None else now
    owner = trial.user_attrs.get(TrialAttr.WORKER)
    if not isinstance(owner, dict):
        start = (trial.datetime_start or datetime.now()).timestamp()
        return now - start > OWNERLESS_GRACE_S
    if is_mine(owner):
        return False
    alive = owner_alive(owner)
    if alive is not None:
        return not alive
    return now - float(owner.get("beat", 0)) > STALE_S


def fail_dead_trials(study: optuna.Study, running: Optional[list[FrozenTrial]] = None) -> int:
    """Fail the RUNNING trials whose run is gone; return how many.

    running: the study's RUNNING trials, if the caller has just read them.
    """
    failed = 0
    now = time.time()
    if running is None:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in running:
        if t.state != TrialState.RUNNING or not is_dead(t, now):
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            failed += 1
        except (UpdateFinishedTrialError, ValueError):
            pass  # its owner or another run finished it meanwhile
    if failed:
        log.info("%s: failed %d trial(s) left running by runs that are gone", study.study_name,
                 failed)
    return failed


def stamp(trial: optuna.Trial) -> None:
    """Mark a trial just asked for as this process's (raises UpdateFinishedTrialError if another
    run already failed it as ownerless)."""
    trial.set_user_attr(TrialAttr.WORKER, owner_stamp())


class Heartbeat:
    """Re-stamps a trial every HEARTBEAT_S while it is measured (a context manager)."""

    def __init__(self, trial: optuna.Trial, interval: float = HEARTBEAT_S):
        self.trial = trial
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                stamp(self.trial)
            except Exception as exc:  # the storage hiccuped or the trial was failed: stop beating
                log.warning("heartbeat of trial %d stopped: %s", self.trial.number,
                            first_line(exc))
                return
