"""The search space: ordinal ladders, constraints that drop what the kernel rewrites or can't run."""

import optuna
import pytest

from autotune.config import SearchSpaceConfig, ShapeConfig
from autotune.errors import UserError
from autotune.problem import vllm_rules
from autotune.problem.shape import MoEShape
from autotune.problem.space import SearchSpace, shared_memory_bytes
from tests.conftest import VLLM

FP8_BLOCK = MoEShape.from_config(ShapeConfig(model="m", experts=256, hidden_size=2048,
                                             intermediate_size=512, topk=8,
                                             block_shape=[128, 128]))


def test_block_quantization_drops_what_the_kernel_would_rewrite():
    space = SearchSpace.from_config(VLLM, FP8_BLOCK, None)
    configs = list(space.configs())
    assert len(configs) == 960
    assert {c["BLOCK_SIZE_K"] for c in configs} == {64, 128}
    assert {c["BLOCK_SIZE_N"] for c in configs} == {32, 64, 128}
    assert "block_k=128" in space.violation({**configs[0], "BLOCK_SIZE_K": 256})


def test_shared_memory_limit_drops_configs_that_cannot_launch():
    # 256x128x128 fp8 tiles: 5 stages fail on Hopper (recorded), 4 stages run.
    big = {"BLOCK_SIZE_M": 256, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
           "num_warps": 8, "num_stages": 5}
    assert shared_memory_bytes(big, "fp8_w8a8") == 5 * (256 * 128 + 128 * 128 + 16) + 4 * 128
    hopper = SearchSpace.from_config(VLLM, FP8_BLOCK, 232448)
    assert "shared_memory" in hopper.violation(big)
    assert hopper.violation({**big, "num_stages": 4}) is None
    rtx = SearchSpace.from_config(VLLM, FP8_BLOCK, 101376)
    assert rtx.size() < hopper.size() < 960


def test_encoding_is_ladder_indices_and_round_trips():
    space = SearchSpace.from_config(VLLM, FP8_BLOCK, None)
    for config in list(space.configs())[::97]:
        indices = space.encode(config)
        assert all(0 <= i < len(space.params[k]) for k, i in indices.items())
        assert space.decode(indices) == config
    with pytest.raises(ValueError):
        space.encode({**config, "BLOCK_SIZE_M": 8})


def test_suggest_takes_enqueued_configs_from_an_optuna_trial():
    space = SearchSpace.from_config(VLLM, FP8_BLOCK, None)
    config = vllm_rules.default_config(64, 256, "fp8_w8a8", (128, 128))
    study = optuna.create_study()
    study.enqueue_trial(space.encode(config))
    assert space.suggest(study.ask()) == config


@pytest.mark.parametrize("params, words", [
    ({"BLOCK_SIZE_M": [16]}, "lacks BLOCK_SIZE_N"),
    ({**VLLM.params, "BLOCK_SIZE_M": [32, 16]}, "ascending"),
])
def test_malformed_spaces_are_refused(params, words):
    with pytest.raises(UserError, match=words):
        SearchSpace.from_config(SearchSpaceConfig(name="x", params=params), FP8_BLOCK, None)


def test_a_space_with_nothing_left_is_refused():
    cfg = SearchSpaceConfig(name="x", params={**VLLM.params, "BLOCK_SIZE_K": [256]},
                            constraints=["block_quant"])
    with pytest.raises(UserError, match="no config left"):
        SearchSpace.from_config(cfg, FP8_BLOCK, None)


@pytest.mark.parametrize("M, block_m, block_n, group, stages", [
    (1, 16, 64, 1, 4), (8, 16, 64, 1, 3), (16, 16, 128, 1, 3), (64, 16, 128, 32, 3),
    (256, 64, 128, 32, 3),
])
def test_vllm_default_fp8_block_config(M, block_m, block_n, group, stages):
    c = vllm_rules.default_config(M, 256, "fp8_w8a8", (128, 128))
    assert (c["BLOCK_SIZE_M"], c["BLOCK_SIZE_N"], c["GROUP_SIZE_M"], c["num_stages"]) == (
        block_m, block_n, group, stages)


def test_nearest_entry_takes_the_smaller_key_on_a_tie():
    entries = {16: {"k": 16}, 32: {"k": 32}}
    assert vllm_rules.nearest_entry(entries, 24) == {"k": 16}
    assert vllm_rules.nearest_entry(entries, 25) == {"k": 32}
    assert vllm_rules.nearest_entry(entries, 4096) == {"k": 32}
