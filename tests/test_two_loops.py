"""Two bucket loops on one GPU (`from_both_ends`, run/buckets.py): one up from the smallest batch
size in the run's thread, one down from the largest in a thread of its own."""

import json
import os
import signal
import threading
import time

import pytest

from autotune.plan import build_plan, split_for_two_loops
from autotune.run.buckets import _warm_starts, two_loops
from autotune.search.samplers import make_pruner, make_sampler
from autotune.study.storage import open_storage
from autotune.study.tuner import BucketTuner
from tests.conftest import compose, replay_args, run_cli


def test_the_loops_split_the_buckets_smaller_half_up_and_larger_half_down():
    assert split_for_two_loops([16, 1, 4096, 64, 256]) == ([1, 16, 64], [4096, 256])
    assert split_for_two_loops([1, 16]) == ([1], [16])
    assert split_for_two_loops([8]) == ([8], [])


def test_a_run_with_two_loops_settles_every_bucket_and_times_the_second_loop_apart(tmp_path):
    result = run_cli("shape=tiny", "device=cpu", "trials=2", "buckets=[1,4,16]",
                     "from_both_ends=true", "retime_alongside=true",
                     f"storage=sqlite:///{tmp_path / 's.db'}", f"output_dir={tmp_path}",
                     "progress=true", cwd=tmp_path)  # the bar is counted from both loops
    assert result.returncode == 0, result.stderr
    assert "larger buckets alongside" in result.stdout  # 16 and 4 were searched in the thread
    assert sum("(re-timed;" in line for line in result.stdout.splitlines()) == 3
    assert list(json.loads((tmp_path / "E=8,N=64,device_name=cpu.json").read_text())) == [
        "triton_version", "1", "4", "16"]


def test_a_failure_in_the_other_loop_halts_this_one_and_is_raised_here():
    halted_here = threading.Event()

    def here(halted):
        while not halted():  # a loop checks between trials
            time.sleep(0.01)
        halted_here.set()
        raise KeyboardInterrupt  # how a halted loop leaves

    def there(halted):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        two_loops(here, there)
    assert halted_here.is_set()


def test_a_failure_here_halts_the_other_loop_before_it_is_raised():
    other_ended = threading.Event()

    def here(halted):
        raise ValueError("a bug")

    def there(halted):
        while not halted():
            time.sleep(0.01)
        other_ended.set()
        raise KeyboardInterrupt

    with pytest.raises(ValueError, match="a bug"):
        two_loops(here, there)
    assert other_ended.is_set()  # it had ended when the failure came out


def test_interrupted_while_waiting_for_the_other_loop_it_halts_it_and_waits_for_its_end():
    ended = threading.Event()

    def here(halted):  # Ctrl-C while this thread waits for there
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()

    def there(halted):
        while not halted():  # a trial in flight, then the check
            time.sleep(0.01)
        time.sleep(0.1)
        ended.set()
        raise KeyboardInterrupt

    # Ctrl-C as Python turns it into KeyboardInterrupt, whatever this process inherited: a suite
    # started in the background by a script has SIGINT ignored, and would wait here forever.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            two_loops(here, there)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert ended.is_set()  # the benchmarker may be closed now: nothing measures with it


def test_each_loop_starts_a_bucket_from_its_own_sides_tuned_buckets(tmp_path):
    plan = build_plan(compose(*replay_args(tmp_path, "trials=3", "patience=null")))
    studies = plan.studies(open_storage(plan.storage))
    for M in (1, 4096):  # one bucket tuned at each end
        study = studies.tune(M, make_sampler(plan.cfg.sampler, space=plan.space),
                             make_pruner(plan.cfg.pruner))
        BucketTuner(study=study, space=plan.space, bench=plan.replay, M=M, budget=3).run()
    sources = {side: {source for source, _ in _warm_starts(plan, 64, studies, side)}
               for side in (None, "below", "above")}
    assert {"neighbour_M1", "neighbour_M4096"} <= sources[None]
    assert "neighbour_M1" in sources["below"] and "neighbour_M4096" not in sources["below"]
    assert "neighbour_M4096" in sources["above"] and "neighbour_M1" not in sources["above"]
