"""How many replays warm a config's graph up before its timed ones, by batch size."""

from autotune.bench.gpu import timer_spec
from autotune.bench.timing import warmup_replays_at
from autotune.config import BenchmarkConfig
from autotune.plan import build_plan
from tests.conftest import compose


def test_memory_bound_batch_sizes_warm_up_briefly_and_larger_ones_fully():
    b = BenchmarkConfig()
    assert [warmup_replays_at(M, b) for M in (1, 64, 96, 4096)] == [2, 2, 10, 10]
    # right after a first look (1 + 3 replays of the same graph), those count as warm-up
    assert [warmup_replays_at(M, b, looked=True) for M in (1, 4096)] == [0, 6]


def test_the_measuring_worker_gets_the_runs_protocol():
    spec = timer_spec(build_plan(compose("shape=tiny", "device=cpu", "benchmark.steady_max_M=0",
                                         "benchmark.warmup_replays=5")))
    assert warmup_replays_at(1, spec) == 5
    spec = timer_spec(build_plan(compose("shape=tiny", "device=cpu",
                                         "benchmark.steady_warmup_replays=3")))
    assert warmup_replays_at(64, spec) == 3 and warmup_replays_at(65, spec) == 10
