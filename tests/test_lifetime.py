"""No process outlives its run: SIGKILL the parent (as the OOM killer or `kill -9` do), then no
child of it (workers, measuring workers, compile pool) may still be there 10 s later.

Every run is started in a session of its own, so its children are found by session id even once
they are reparented to init. Zombies are not counted: they run nothing and hold nothing, and
whether init reaps them is up to init.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import bound, measured_trials, storage_args, trials_by_study

# A killed run's children must be gone within this (the kernel's PDEATHSIG is immediate; the
# bound tolerates a loaded 2-core machine).
GONE_WITHIN_S = 10


def session_processes(sid: int) -> list[psutil.Process]:
    """Live processes of the session `sid` (the run's and everything it started)."""
    found = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def wait_for(predicate, timeout: float, step: float = 0.2) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # the storage is still being created
            pass
        time.sleep(step)
    return False


def start(args, cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def kill_parent_and_assert_no_child_survives(run: subprocess.Popen, at_least: int) -> None:
    """SIGKILL the run's own process only (not its group); then none of its session may live."""
    def children():
        return [p for p in session_processes(run.pid) if p.pid != run.pid]

    # A run stamps its trial before it starts the measuring worker that times it: wait for them.
    assert wait_for(lambda: len(children()) >= at_least, bound(60)), \
        [p.cmdline()[-2:] for p in children()]
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    survived = not wait_for(lambda: not session_processes(run.pid), GONE_WITHIN_S)
    left = [(p.pid, " ".join(p.cmdline())[-80:]) for p in session_processes(run.pid)]
    for p in session_processes(run.pid):  # do not leave them to the rest of the suite
        p.kill()
    assert not survived, f"processes left {GONE_WITHIN_S} s after the parent was killed: {left}"


def measuring_owners(url: str) -> set[int]:
    return {t.user_attrs["worker"]["pid"] for ts in trials_by_study(url).values() for t in ts
            if "worker" in t.user_attrs}


def test_a_killed_workers_run_leaves_no_worker_behind_and_a_rerun_completes(tmp_path):
    url = f"journal:{tmp_path / 'studies.journal'}"
    args = storage_args(tmp_path, url, "trials=40", "buckets=[1,16,64]", "workers=2")
    run = start(["-m", "autotune", *args], tmp_path)
    assert wait_for(lambda: len(measuring_owners(url)) == 2, bound(180)), \
        "the workers did not start"
    kill_parent_and_assert_no_child_survives(run, at_least=2)
    before = measured_trials(url)
    rerun = subprocess.run([sys.executable, "-m", "autotune", *args], cwd=tmp_path,
                           capture_output=True, text=True, timeout=bound(600))
    assert rerun.returncode == 0, rerun.stderr
    after = measured_trials(url)
    for name, trials in before.items():  # nothing finished was lost
        assert {n: after[name][n] for n in trials} == trials
    assert all(len(t) == 40 for t in after.values()) and len(after) == 3


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_cpu_run_leaves_no_measuring_worker_behind(tmp_path, workers):
    """The interpreter benchmarker measures in a child process (a grandchild with workers=2)."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    args = ["-m", "autotune", "shape=tiny", "device=cpu", f"storage={url}", "trials=20",
            f"output_dir={tmp_path / 'configs'}", "progress=false", f"workers={workers}"]
    run = start(args, tmp_path)
    # A trial stamped by each measuring process's owner: its measuring worker is up and timing.
    assert wait_for(lambda: len(measuring_owners(url)) == workers, bound(300)), \
        "no trial was stamped"
    kill_parent_and_assert_no_child_survives(run, at_least=2 * workers - (workers == 1))


POOL_SCRIPT = """
import sys, time
from autotune.bench.compile import CompilePool
from autotune.bench.gpu import timer_spec
from autotune.plan import build_plan
from tests.conftest import compose

pool = CompilePool(timer_spec(build_plan(compose("shape=tiny", "device=cpu"))), 2)
config = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 32, "GROUP_SIZE_M": 1,
          "num_warps": 4, "num_stages": 2}
pool.wait(config, 16)
print("ready", flush=True)
time.sleep(600)
"""


def test_a_killed_benchmarker_leaves_no_compile_process_behind(tmp_path):
    root = Path(__file__).resolve().parent.parent
    run = subprocess.Popen([sys.executable, "-c", POOL_SCRIPT], cwd=root, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True,
                           env={**os.environ, "PYTHONPATH": str(root)})
    assert run.stdout.readline().strip() == "ready", run.stderr.read()
    kill_parent_and_assert_no_child_survives(run, at_least=2)


FORKED_WORKER_SCRIPT = """
import time
from autotune.bench.worker import MeasuringWorker
from tests.test_worker import make_scripted

worker = MeasuringWorker(make_scripted, None, forked=True)
worker.call("measure", {}, 1)
print("ready", flush=True)
time.sleep(600)
"""


def test_a_killed_benchmarker_leaves_no_forked_measuring_worker_behind():
    # The worker is the server's child, not the killed process's: it must go with it all the same.
    root = Path(__file__).resolve().parent.parent
    run = subprocess.Popen([sys.executable, "-c", FORKED_WORKER_SCRIPT], cwd=root,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True, env={**os.environ, "PYTHONPATH": str(root)})
    assert run.stdout.readline().strip() == "ready", run.stderr.read()
    kill_parent_and_assert_no_child_survives(run, at_least=2)
