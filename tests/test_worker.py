"""Fault containment: a config that kills, hangs or breaks the measuring worker is a result."""

import os
import time

import pytest

from autotune.bench.worker import MeasuringWorker, WorkerDied


class ScriptedTimer:
    """Behaves as told by the config: the real process machinery, a scripted device."""

    def __init__(self, spec):
        self.pid = os.getpid()

    def measure(self, config, M):
        action = config.get("action")
        if action == "exit":
            os._exit(3)  # the process vanishes, as after a segfault in a driver
        if action == "hang":
            time.sleep(60)
        if action == "poison":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if action == "raise":
            raise ValueError("out of resources: shared memory")
        return {"us": float(M), "pid": self.pid}


def make_scripted(spec):
    return ScriptedTimer(spec)


def broken_factory(spec):
    raise RuntimeError("no device")


@pytest.fixture
def worker():
    w = MeasuringWorker(make_scripted, None, timeout_s=3)
    yield w
    w.close()


def test_answers_requests_in_one_long_lived_process(worker):
    first = worker.call("measure", {}, 16)
    second = worker.call("measure", {}, 32)
    assert (first["us"], second["us"]) == (16.0, 32.0)
    assert first["pid"] == second["pid"] != os.getpid()
    assert worker.stats.restarts == 0


def test_an_ordinary_error_comes_back_and_the_worker_lives_on(worker):
    pid = worker.call("measure", {}, 1)["pid"]
    with pytest.raises(RuntimeError, match="out of resources"):
        worker.call("measure", {"action": "raise"}, 1)
    assert worker.call("measure", {}, 1)["pid"] == pid


@pytest.mark.parametrize("action, reason", [
    ("exit", "exit code 3"),
    ("hang", "no answer within 3 s"),
    ("poison", "illegal memory access"),
])
def test_a_fault_replaces_the_worker_and_the_next_request_is_served(worker, action, reason):
    pid = worker.call("measure", {}, 1)["pid"]
    with pytest.raises(WorkerDied, match=reason):
        worker.call("measure", {"action": action}, 1)
    after = worker.call("measure", {}, 8)
    assert after["us"] == 8.0 and after["pid"] != pid
    assert worker.stats.restarts == 1 and reason in worker.stats.faults[0]


def test_a_worker_that_cannot_start_says_why():
    w = MeasuringWorker(broken_factory, None, timeout_s=3)
    with pytest.raises(RuntimeError, match="worker failed to start: RuntimeError: no device"):
        w.call("measure", {}, 1)
    w.close()
