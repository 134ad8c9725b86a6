"""The compile-ahead pool with real worker processes (under the interpreter a compile only
validates the config, so this checks the pool's bookkeeping, not Triton's compiler)."""

from autotune.bench.compile import RESERVED_WORKERS, CompilePool
from autotune.bench.gpu import timer_spec
from autotune.plan import build_plan
from tests.conftest import compose

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


def test_speculation_uses_spare_workers_only_and_counts_each_config_once():
    p = pool(RESERVED_WORKERS + 1)
    try:
        p.speculate(CONFIGS, 16)
        assert len(p._speculating) == 1  # the reserved workers stay free for configs asked now
        for config in CONFIGS:
            assert p.wait(config, 16)[1] is None
        assert p.compiled == len(CONFIGS)
        p.speculate(CONFIGS, 64)  # already compiled for this side of the shortcut: nothing to do
        assert not p._later and not p._speculating
    finally:
        p.close()


def test_no_workers_means_no_pool():
    p = pool(0)
    p.speculate(CONFIGS, 16)
    assert p.wait(CONFIGS[0], 16) == (0.0, None) and p._pool is None
