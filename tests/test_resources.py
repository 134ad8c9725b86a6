"""The compiled resource tables (sm_120, sm_100) and how the search space and the dry run use them."""

import itertools
import json

import pytest

from autotune.config import ShapeConfig
from autotune.plan import build_plan
from autotune.problem.resources import RESOURCE_KEYS, TABLE_DIR, TABLE_FORMAT, load_table
from autotune.problem.shape import MoEShape
from autotune.problem.space import SearchSpace, block_quant_violation, shared_memory_bytes
from tests.conftest import compose
from tests.test_space import VLLM

RTX_PRO_LIMIT = 101376  # sm_120's opt-in shared memory per block
BLACKWELL_LIMIT = 232448  # sm_100's
TABLES = {  # (capability, dtype, block) -> the arch's limit
    ((12, 0), "fp8_w8a8", (128, 128)): RTX_PRO_LIMIT,
    ((12, 0), "bf16", None): RTX_PRO_LIMIT,
    ((10, 0), "fp8_w8a8", (128, 128)): BLACKWELL_LIMIT,
    ((10, 0), "bf16", None): BLACKWELL_LIMIT,
}


def fp8_block_shape() -> MoEShape:
    return MoEShape.from_config(ShapeConfig(model="qwen35", experts=256, hidden_size=2048,
                                            intermediate_size=512, topk=8,
                                            block_shape=[128, 128]))


def vllm_tiles(block):
    """The distinct tile configs of the vllm space (GROUP_SIZE_M does not change a binary)."""
    params = VLLM.params
    for values in itertools.product(*(params[k] for k in RESOURCE_KEYS)):
        cfg = dict(zip(RESOURCE_KEYS, values))
        if not block_quant_violation(cfg, block):
            yield cfg


@pytest.mark.parametrize("key", TABLES, ids=lambda k: f"sm_{k[0][0]}{k[0][1]}-{k[1]}")
def test_a_table_covers_every_tile_of_the_vllm_space(key):
    capability, dtype, block = key
    table = load_table(capability, dtype, block)
    assert table is not None, f"no shipped table for {key}"
    assert table.shared_limit == TABLES[key]
    assert table.triton_version  # the Triton it was compiled with
    tiles = list(vllm_tiles(block))
    assert len(table) == len(tiles) == (240 if block else 480)
    assert all(table.lookup(t) is not None for t in tiles)
    data = json.loads((TABLE_DIR / f"{table.name}.json").read_text())
    assert data["format"] == TABLE_FORMAT and data["target"] == f"sm_{capability[0]}{capability[1]}"


@pytest.mark.parametrize("key", TABLES, ids=lambda k: f"sm_{k[0][0]}{k[0][1]}-{k[1]}")
def test_the_estimate_never_admits_a_config_the_compiled_table_rejects(key):
    # Where no table exists the estimate decides; it must never let through what cannot run.
    capability, dtype, block = key
    table, limit = load_table(capability, dtype, block), TABLES[key]
    admitted_but_rejected = [
        t for t in vllm_tiles(block)
        if shared_memory_bytes(t, dtype) <= limit
        and table.lookup(t).reason_not_run(limit, table.target) is not None]
    assert admitted_but_rejected == []


def test_the_space_takes_shared_memory_from_the_table_where_one_exists():
    shape = fp8_block_shape()
    table = load_table((12, 0), "fp8_w8a8", (128, 128))
    estimated = SearchSpace.from_config(VLLM, shape, RTX_PRO_LIMIT)
    compiled = SearchSpace.from_config(VLLM, shape, RTX_PRO_LIMIT, table)
    # Triton keeps num_stages - 1 tiles in flight on these GEMMs, so the estimate drops configs
    # that fit; every config the table admits compiles within the limit.
    assert compiled.size() > estimated.size()
    assert compiled.shared_memory_drops() < compiled.shared_memory_drops(estimated=True)
    for cfg in compiled.configs():
        found = table.lookup(cfg)
        assert found.error is None and found.shared <= RTX_PRO_LIMIT
    big = {"BLOCK_SIZE_M": 256, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
           "num_warps": 8, "num_stages": 5}
    assert "compiled for sm_120" in compiled.violation(big)
    # A compiled table is part of what defines the space, so of the study names.
    assert compiled.fingerprint() != estimated.fingerprint()


def test_the_rtxpro6000_dry_run_says_how_many_configs_the_compiled_table_drops():
    plan = build_plan(compose("shape=qwen35_tp1", "device=rtxpro6000"), probe_gpu=False)
    line = next(x for x in plan.describe().splitlines() if x.startswith("shared mem"))
    drops = plan.space.shared_memory_drops()
    estimated = plan.space.shared_memory_drops(estimated=True)
    assert line.startswith("shared mem compiled for sm_120 (Triton ")
    assert f"drops {drops} configs over 101376 bytes or not compiling" in line
    assert f"the estimate would drop {estimated}" in line


def test_the_h200_dry_run_says_its_limit_is_estimated():
    plan = build_plan(compose("shape=qwen35_tp1", "device=h200"), probe_gpu=False)
    line = next(x for x in plan.describe().splitlines() if x.startswith("shared mem"))
    assert line.startswith("shared mem estimated (no compiled table")
    assert plan.space.context.resources is None
