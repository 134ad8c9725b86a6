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


@pytest.fixture(params=[False, True], ids=["spawned", "forked"])
def worker(request):
    """Each fault is contained alike in a spawned worker and in one forked from the server."""
    w = MeasuringWorker(make_scripted, None, timeout_s=3, forked=request.param)
    yield w
    w.close()


def test_a_forked_worker_comes_from_the_server_and_comes_back_from_it_after_a_fault():
    from multiprocessing import forkserver

    import psutil

    w = MeasuringWorker(make_scripted, None, timeout_s=3, forked=True)
    try:
        pid = w.call("measure", {}, 1)["pid"]
        server = forkserver._forkserver._forkserver_pid
        assert psutil.Process(pid).ppid() == server
        with pytest.raises(WorkerDied):
            w.call("measure", {"action": "exit"}, 1)
        again = w.call("measure", {}, 1)["pid"]
        assert again != pid and psutil.Process(again).ppid() == server
    finally:
        w.close()
    with pytest.raises(ValueError, match="spawn it"):
        MeasuringWorker(make_scripted, None, env={"TRITON_INTERPRET": "1"}, forked=True)


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


def slow_start(spec):
    time.sleep(1.0)  # as CUDA's start-up and the timer's inputs take seconds
    return ScriptedTimer(spec)


def dies_starting(spec):
    os._exit(4)


def test_a_worker_started_ahead_is_ready_by_its_first_request_and_closes_cleanly():
    import psutil

    ahead = MeasuringWorker(slow_start, None, timeout_s=3)
    ahead.start()  # returns at once; the child starts up meanwhile
    child = psutil.Process(ahead._proc.pid)
    assert ahead._conn.poll(60)  # the caller's own start-up, meanwhile: the child got ready
    assert ahead.call("measure", {}, 4)["pid"] == child.pid
    assert ahead.stats.start_wait_seconds < 0.5  # its start-up was already done
    ahead.close()
    assert not child.is_running()

    cold = MeasuringWorker(slow_start, None, timeout_s=3)
    cold.call("measure", {}, 4)
    assert cold.stats.start_wait_seconds >= 1.0  # started by the request, which waited
    cold.close()

    unused = MeasuringWorker(slow_start, None, timeout_s=3)
    unused.start()
    child = psutil.Process(unused._proc.pid)
    unused.close()  # before it was ever ready
    assert not child.is_running()


def test_a_worker_that_dies_while_starting_is_a_fault_and_a_fresh_one_is_tried_next():
    w = MeasuringWorker(dies_starting, None, timeout_s=3)
    w.start()
    with pytest.raises(WorkerDied, match="died while starting .exit code 4"):
        w.call("measure", {}, 1)
    with pytest.raises(WorkerDied, match="exit code 4"):
        w.call("measure", {}, 1)
    w.close()


def test_a_worker_that_cannot_start_says_why():
    w = MeasuringWorker(broken_factory, None, timeout_s=3)
    with pytest.raises(RuntimeError, match="worker failed to start: RuntimeError: no device"):
        w.call("measure", {}, 1)
    w.close()


def test_rounds_are_interleaved_and_a_failing_config_is_not_timed_again():
    from autotune.bench.timing import interleaved_rounds

    order = []

    def prepare(config):
        if config == "no compile":
            raise ValueError("out of resources: shared memory")
        return config

    def time_once(config):
        order.append(config)
        if config == "dies later" and order.count(config) == 2:
            raise ValueError("out of resources: registers")
        return {"us": 1.0}

    answers = interleaved_rounds(prepare, time_once, ["a", "no compile", "dies later", "b"], 3)
    assert order == ["a", "dies later", "b", "dies later", "b", "a", "b", "a"]
    assert [len(a["rounds"]) for a in answers] == [3, 0, 1, 3]
    assert [a["error"] for a in answers] == [
        None, "ValueError: out of resources: shared memory",
        "ValueError: out of resources: registers", None]
    with pytest.raises(RuntimeError, match="illegal memory access"):  # the worker must go
        interleaved_rounds(lambda c: c, poison, ["a"], 1)


def poison(_):
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


class RoundsTimer:
    """Times in rounds, but a config marked "exit" kills the process whichever way it is timed."""

    def __init__(self, spec):
        pass

    def measure(self, config, M):
        if config.get("action") == "exit":
            os._exit(3)
        return {"us": float(config["us"]), "spread": 0.0, "samples": [1.0], "method": {}}

    def measure_rounds(self, configs, M, rounds):
        return [{"rounds": [self.measure(c, M) for _ in range(rounds)], "error": None}
                for c in configs]

    def environment(self):
        return {}


def make_rounds_timer(spec):
    return RoundsTimer(spec)


def test_a_fault_during_rounds_is_found_by_measuring_one_config_at_a_time():
    from autotune.bench.gpu import WorkerBenchmarker

    bench = WorkerBenchmarker(MeasuringWorker(make_rounds_timer, None, timeout_s=10), {})
    try:
        fine = bench.measure_rounds([{"us": 5}, {"us": 7}], 1, 2)
        assert [[m.us for m in t] for t in fine] == [[5.0, 5.0], [7.0, 7.0]]
        timings = bench.measure_rounds([{"us": 5}, {"action": "exit"}, {"us": 7}], 1, 2)
        assert [[m.us for m in t] for t in timings] == [[5.0, 5.0], [None], [7.0, 7.0]]
        assert "fault: worker process died (exit code 3)" in timings[1][0].infeasible
        assert bench.stats().worker_restarts == 2  # the request, then the config alone
    finally:
        bench.close()
