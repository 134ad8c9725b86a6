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
    wall_clock.reset()
    settler = Settler(lambda M: settled.append(
        (M, threading.current_thread() is threading.main_thread())), alongside=False)
    settler.submit(1)
    assert settled == [(1, True)]
    settler.finish()
    settler.close()
    assert wall_clock.seconds().keys() <= {"total"}  # no phase, nothing alongside


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


def test_background_time_counts_alongside_until_the_loop_waits_for_it():
    wall_clock.reset()
    release = threading.Event()
    start = time.monotonic()
    with Settler(lambda M: release.wait(5), alongside=True) as settler:
        settler.submit(1)
        time.sleep(0.2)  # the loop's own work, while bucket 1 is settled beside it
        threading.Timer(0.2, release.set).start()
        looped = time.monotonic() - start
        settler.finish()  # then about 0.2 s waited for: re-timing that overlaps nothing
    timed = wall_clock.seconds()
    assert timed["re-timing"] >= 0.15
    assert timed.get(wall_clock.ALONGSIDE, 0.0) <= looped + 0.01  # only the part beside the loop
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
