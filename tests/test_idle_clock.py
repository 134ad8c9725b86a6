"""The GPU's idle time in the run's summary: compile waits count only while the worker has no
request (the re-timing alongside measures during the search's waits)."""

from autotune.bench.gpu import IdleClock
from autotune.bench.protocol import BenchStats


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_compile_wait_is_idle_only_while_nothing_is_measured():
    clock = Clock()
    idle = IdleClock(clock)
    with idle.waiting():  # the search waits for a compile: 0-2 idle
        clock.now = 2.0
        with idle.measuring():  # the re-timing measures meanwhile: 2-5 busy
            clock.now = 5.0
        clock.now = 6.0  # 5-6 idle again
    clock.now = 9.0  # nobody waits for a compile: the tuner's own time, not counted
    with idle.measuring():
        clock.now = 10.0
    assert idle.seconds == 3.0


def test_two_waits_at_once_are_one_idle_stretch():
    clock = Clock()
    idle = IdleClock(clock)
    with idle.waiting():
        clock.now = 1.0
        with idle.waiting():
            clock.now = 3.0
        clock.now = 4.0
    assert idle.seconds == 4.0


def test_the_idle_share_is_of_the_time_measuring_or_idle():
    stats = BenchStats(measure_seconds=9.0, compile_wait_seconds=5.0, idle_seconds=1.0)
    assert stats.idle_share == 0.1
    assert BenchStats().idle_share == 0.0
