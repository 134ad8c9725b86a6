"""Settling finished buckets alongside the search (run/settler.py): in order, in another thread,
failures raised in the bucket loop, nothing begun after a stop."""

import multiprocessing
import threading
import time

import pytest

from autotune import wall_clock
from autotune.lifetime import die_with_parent
from autotune.run.settler import Settler


def test_buckets_are_settled_in_order_in_another_thread_and_finish_waits_for_them():
    settled = []
    settler = Settler(lambda M: (time.sleep(0.02), settled.append(
        (M, threading.current_thread() is threading.main_thread()))), alongside=True)
    try:
        for M in (1, 2, 4):
            settler.submit(M)
        settler.finish()
    finally:
        settler.close()
    assert settled == [(1, False), (2, False), (4, False)]


def test_without_alongside_each_bucket_is_settled_at_once_in_the_loop():
    settled = []
    settler = Settler(lambda M: settled.append(
        (M, threading.current_thread() is threading.main_thread())), alongside=False)
    settler.submit(1)
    assert settled == [(1, True)]
    settler.finish()
    settler.close()


def test_a_failure_in_the_background_is_raised_in_the_loop():
    def settle(M):
        if M == 1:
            raise KeyboardInterrupt  # a stop found by the settling thread
    with Settler(settle, alongside=True) as settler:
        settler.submit(1)
        with pytest.raises(KeyboardInterrupt):
            settler.finish()


def test_close_waits_for_the_bucket_being_settled_and_begins_no_other():
    started, release = threading.Event(), threading.Event()
    settled = []

    def settle(M):
        started.set()
        release.wait(5)
        settled.append(M)

    settler = Settler(settle, alongside=True)
    settler.submit(1)
    settler.submit(2)
    started.wait(5)
    threading.Timer(0.2, release.set).start()
    settler.close()  # a stop in the loop: bucket 1 is measuring, bucket 2 not begun
    assert settled == [1]


def test_the_background_time_counts_alongside_and_finishing_counts_as_re_timing():
    wall_clock.reset()
    start = time.monotonic()
    with Settler(lambda M: time.sleep(0.1), alongside=True) as settler:
        settler.submit(1)
        settler.finish()
    whole = time.monotonic() - start
    timed = wall_clock.seconds()
    assert timed[wall_clock.ALONGSIDE] >= 0.1
    assert 0 < timed["re-timing"] <= whole + 0.01  # the loop's wait for it, not its work again
    wall_clock.reset()


def _child() -> None:
    die_with_parent()
    time.sleep(60)


def test_a_process_started_while_settling_outlives_the_run_that_started_it():
    # A measuring worker replaced after a fault in the re-timing is started from the settling
    # thread; the kernel kills a child when the thread that started it ends (lifetime.py).
    started = []

    def settle(M):
        started.append(multiprocessing.get_context("spawn").Process(target=_child, daemon=True))
        started[-1].start()

    settler = Settler(settle, alongside=True)
    settler.submit(1)
    settler.finish()
    settler.close()
    try:
        time.sleep(2)  # a SIGKILL at the thread's end would have landed by now
        assert started[0].is_alive()
    finally:
        started[0].kill()
        started[0].join()
