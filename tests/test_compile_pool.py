"""The compile-ahead pool with real worker processes (under the interpreter a compile only
validates the config, so this checks the pool's bookkeeping, not Triton's compiler)."""

import multiprocessing
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np

from autotune.bench.compile import RESERVED_WORKERS, CompilePool
from autotune.bench.gpu import timer_spec
from autotune.plan import build_plan
from autotune.run.buckets import (
    _across_shortcut,
    _prior,
    _speculate,
    _warm_starts,
    compile_first_trials,
    work,
)
from autotune.search.warm_starts import ranked_records
from autotune.study.records import read_records
from autotune.study.storage import open_storage
from tests.conftest import bound, compose, replay_args

CONFIGS = [{"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": bk, "GROUP_SIZE_M": 1,
            "num_warps": 4, "num_stages": stages} for bk in (32, 64) for stages in (2, 3)]


def pool(workers: int) -> CompilePool:
    # shape=tiny: E=8 experts, top-2, so M=1 takes vLLM's small-M shortcut (1*2*4 <= 8), M>=2 not.
    return CompilePool(timer_spec(build_plan(compose("shape=tiny", "device=cpu"))), workers)


def test_a_config_compiles_once_per_side_of_the_small_m_shortcut():
    p = pool(2)
    try:
        for M in (1, 64, 16, 1):
            assert p.wait(CONFIGS[0], M)[1] is None
        assert p.compiled == 2
    finally:
        p.close()


def test_a_config_that_cannot_compile_is_one_compile_error_however_often_waited_for():
    p = pool(1)
    bad = {**CONFIGS[0], "BLOCK_SIZE_K": 24}
    try:
        assert all(p.wait(bad, 16)[1] for _ in range(3))  # a look, its measurement, a re-timing
        assert p.compile_errors == 1
    finally:
        p.close()


def test_speculation_uses_spare_workers_only_and_counts_each_config_once():
    p = pool(RESERVED_WORKERS + 1)
    try:
        p.speculate([(c, 16) for c in CONFIGS])
        assert len(p._speculating) == 1  # the reserved workers stay free for configs asked now
        for config in CONFIGS:
            assert p.wait(config, 16)[1] is None
        assert p.compiled == len(CONFIGS)
        p.speculate([(c, 64) for c in CONFIGS])  # same side of the shortcut: already compiled
        assert not any(p._later.values()) and not p._speculating
    finally:
        p.close()


def test_a_forecast_goes_in_front_of_the_list_left_to_compile():
    p = pool(0)  # no process: only the list is looked at
    p.workers = RESERVED_WORKERS  # no spare worker either, so nothing leaves the list
    p.speculate([(c, 16) for c in CONFIGS[:3]])
    p.speculate([(CONFIGS[2], 16), (CONFIGS[3], 16)], first=True)
    assert list(p._later[threading.get_ident()]) == [(CONFIGS[2], 16), (CONFIGS[3], 16), (CONFIGS[0], 16),
                              (CONFIGS[1], 16)]
    p.speculate([(CONFIGS[1], 16)])  # a plain list replaces it
    assert list(p._later[threading.get_ident()]) == [(CONFIGS[1], 16)]


def test_started_ahead_every_worker_process_is_up_before_the_first_config():
    import psutil

    p = pool(2)
    try:
        p.start()
        assert len(p._pool._processes) == 2  # spawned now, importing while the run starts up
        assert all(psutil.Process(pid).is_running() for pid in p._pool._processes)
        assert p.wait(CONFIGS[0], 16)[1] is None and p.compiled == 1
        pids = list(p._pool._processes)
    finally:
        p.close()
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                   for pid in pids)


def test_a_gpu_run_starts_the_pools_server_before_its_plan_and_the_pool_forks_from_it():
    # A fresh interpreter: the server is one per process, and this one's may be up already.
    script = textwrap.dedent("""
        import psutil
        from multiprocessing import forkserver
        from autotune.bench import start_early
        from autotune.bench.compile import CompilePool
        from autotune.bench.gpu import timer_spec
        from autotune.config import BenchmarkConfig
        from autotune.plan import build_plan
        from tests.conftest import compose

        start_early("interpreter", BenchmarkConfig())  # the interpreter compiles nothing ahead
        start_early("gpu", BenchmarkConfig(compile_workers=0))  # no compile pool, worker spawned
        assert forkserver._forkserver._forkserver_pid is None
        start_early("gpu", BenchmarkConfig())  # no GPU needed: nothing here touches CUDA
        server = forkserver._forkserver._forkserver_pid
        assert server is not None and psutil.Process(server).is_running()
        pool = CompilePool(timer_spec(build_plan(compose("shape=tiny", "device=cpu"))), 1)
        try:
            pool.start()
            (pid,) = pool._pool._processes
            assert psutil.Process(pid).ppid() == server
        finally:
            pool.close()
        print("forked from the early server")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "forked from the early server" in done.stdout


def test_two_threads_speculative_lists_are_kept_apart_and_taken_in_turn():
    p = pool(0)  # no process: only the lists are looked at
    p.workers = RESERVED_WORKERS  # no spare worker either, so nothing leaves the lists
    p.speculate([(c, 1) for c in CONFIGS[:1]])  # the loop up from the smallest batch size
    other = threading.Thread(target=p.speculate, args=([(c, 4096) for c in CONFIGS[1:3]],))
    other.start()
    other.join()
    p.speculate([(CONFIGS[3], 1)])  # replaces this thread's list only
    assert [list(later) for later in p._later.values()] == [
        [(CONFIGS[3], 1)], [(CONFIGS[1], 4096), (CONFIGS[2], 4096)]]
    p.workers = RESERVED_WORKERS + 2  # two spare workers: one config from each list
    p._submit = lambda config, M: (config, M)  # noqa: E731 - what would be compiled, not a future
    p._speculating = []
    p._speculate_more()
    assert p._speculating == [(CONFIGS[3], 1), (CONFIGS[1], 4096)]


def test_no_workers_means_no_pool():
    p = pool(0)
    p.start()
    p.speculate([(c, 16) for c in CONFIGS])
    assert p.wait(CONFIGS[0], 16) == (0.0, None) and p._pool is None


class Recorder:
    """Stands in for the GPU benchmarker's pool: only what the run hands it is checked."""

    def speculate(self, candidates):
        self.candidates = list(candidates)


def test_a_run_speculates_the_priors_ranking_of_this_bucket_and_the_next(tmp_path):
    plan = build_plan(compose(*replay_args(tmp_path, "benchmark.speculate=5")))
    configs = list(plan.space.configs())
    recorder = Recorder()
    _speculate(plan, recorder, [(8, _prior(plan, 8)), (16, _prior(plan, 16))])
    top = {M: [configs[i] for i in np.argsort(-_prior(plan, M), kind="stable")[:5]] for M in (8, 16)}
    assert recorder.candidates == [c for pair in zip(top[8], top[16]) for c in
                                   ((pair[0], 8), (pair[1], 16))]
    _speculate(plan, recorder, [(4096, _prior(plan, 4096))])  # the last bucket: itself only
    assert [M for _, M in recorder.candidates] == [4096] * 5
    # The next bucket's first trials go ahead of the rankings.
    _speculate(plan, recorder, [(16, _prior(plan, 16))], ahead=[(configs[7], 16)])
    assert recorder.candidates[0] == (configs[7], 16) and len(recorder.candidates) == 6


def _use_a_pool_and_return() -> None:
    p = pool(2)
    p.speculate([(c, 16) for c in CONFIGS])
    assert p.wait(CONFIGS[0], 16)[1] is None
    p.close()


def test_a_process_that_used_a_pool_exits():
    # A `workers=N` worker is a spawned process with its own pool; it must end when its work does.
    proc = multiprocessing.get_context("spawn").Process(target=_use_a_pool_and_return)
    proc.start()
    proc.join(timeout=bound(120))
    alive = proc.is_alive()
    if alive:
        proc.kill()
    assert not alive and proc.exitcode == 0


class SpeculationRecorder:
    """The replay benchmarker, also keeping each list the run hands it to compile ahead (and,
    apart, the search's forecasts)."""

    def __init__(self, replay):
        self.replay, self.lists, self.forecasts = replay, [], []

    def speculate(self, candidates, first=False):
        (self.forecasts if first else self.lists).append(list(candidates))

    def __getattr__(self, name):
        return getattr(self.replay, name)


def test_the_next_buckets_first_trials_are_compiled_ahead(tmp_path):
    plan = build_plan(compose(*replay_args(tmp_path, "benchmark.speculate=3", "buckets=[1,16]",
                                           "trials=6", "patience=null")))
    bench = SpeculationRecorder(plan.replay)
    studies = plan.studies(open_storage(plan.storage))
    first_at_1 = [c for _, c in _warm_starts(plan, 1, studies)]
    work(plan, studies, bench)
    best_at_1 = ranked_records(read_records(studies.tuned[1]))[:2]
    at_start, after_search, last = bench.lists
    # Bucket 1 starts: its own first trials, compiled for 16 too, ahead of both rankings.
    assert at_start[:-6] == [(c, 16) for c in first_at_1]
    assert [M for _, M in at_start[-6:]] == [1, 16] * 3
    # Its search ends: its two best, 16's neighbour warm starts, ahead of 16's ranking.
    assert after_search[:2] == [(r.config, 16) for r in best_at_1]
    assert [M for _, M in after_search[2:]] == [16] * 3
    assert [M for _, M in last] == [16] * 3  # the last bucket: its own ranking only
    # After each proposal of the GP, its forecast of the next ones: unmeasured configs of the
    # bucket, 16 of them.
    assert len(bench.forecasts) >= 2  # most of 6 trials a bucket are warm starts
    for forecast in bench.forecasts:
        assert len(forecast) == 16 and {M for _, M in forecast} <= {1, 16}


def test_the_first_bucket_past_the_small_m_shortcut_is_ranked_from_the_first_bucket_on(tmp_path):
    # qwen3.5 (E=256, top-8): M <= 8 takes vLLM's shortcut, so M=16's kernels are other kernels.
    plan = build_plan(compose(*replay_args(tmp_path)))
    pending = [1, 2, 4, 8, 16, 64]
    assert [_across_shortcut(plan, M, pending) for M in pending] == [[16]] * 4 + [[], []]
    assert _across_shortcut(plan, 1, [1, 2]) == []  # none left past it


class PrepareRecorder:
    def __init__(self):
        self.prepared = []

    def prepare(self, configs, M):
        self.prepared.append((list(configs), M))


def test_the_first_buckets_first_trials_are_handed_over_before_any_study_exists(tmp_path):
    plan = build_plan(compose(*replay_args(tmp_path)))
    bench = PrepareRecorder()
    compile_first_trials(plan, bench)
    assert not (tmp_path / "studies.db").exists()
    [(configs, M)] = bench.prepared  # one loop: its first bucket
    assert M == plan.buckets[0]
    assert configs == [c for _, c in _warm_starts(plan, M, plan.studies(open_storage(
        plan.storage)))]  # what the bucket starts from, with no bucket tuned yet


def test_two_threads_waiting_on_the_same_configs_compile_each_once():
    from concurrent.futures import ThreadPoolExecutor

    p = pool(RESERVED_WORKERS + 1)
    try:
        # From the main thread, as the benchmarker does: the kernel kills a process when the
        # thread that started it ends (autotune/lifetime.py), and these threads end.
        p.start()
        p.speculate([(c, 16) for c in CONFIGS])
        with ThreadPoolExecutor(2) as threads:  # the search, and the re-timing alongside it
            waits = [threads.submit(lambda order: [p.wait(c, 16) for c in order], order)
                     for order in (CONFIGS, CONFIGS[::-1])]
            assert all(error is None for w in waits for _, error in w.result())
        assert p.compiled == len(CONFIGS)
    finally:
        p.close()
