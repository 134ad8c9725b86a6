"""E and N follow from the model and its parallelism exactly as vLLM derives them."""

import pytest

from autotune.config import ShapeConfig
from autotune.errors import UserError
from autotune.problem.shape import MoEShape


def shape(**kw):
    base = dict(model="m", experts=256, hidden_size=3072, intermediate_size=1536, topk=8,
                dtype="fp8_w8a8", block_shape=[128, 128])
    return MoEShape.from_config(ShapeConfig(**{**base, **kw}))


@pytest.mark.parametrize("tp, ep, E, N", [
    (1, 1, 256, 1536),
    (4, 1, 256, 384),   # MiniMax-M2.5 TP4: every GPU holds every expert, sliced
    (1, 4, 64, 1536),   # MiniMax-M2.5 EP4: whole experts per GPU
    (2, 2, 128, 768),
])
def test_tp_slices_experts_and_ep_splits_them(tp, ep, E, N):
    s = shape(tp=tp, ep=ep)
    assert (s.E, s.N, s.K, s.topk) == (E, N, 3072, 8)


@pytest.mark.parametrize("kw, words", [
    (dict(tp=5), "shape.tp=5 does not divide intermediate_size=1536"),
    (dict(ep=3), "shape.ep=3 does not divide the 256 experts"),
    (dict(tp=32), "not a multiple of the quantization block_n=128"),   # N = 48, gcd 16
    (dict(hidden_size=3000), "hidden_size=3000"),
    (dict(dtype="bf8"), "shape.dtype=bf8"),
    (dict(topk=300), "exceeds shape.experts"),
    (dict(block_shape=[128]), "two positive sizes"),
    (dict(dtype="bf16"), "block-wise quantization is implemented for fp8_w8a8 only"),
    (dict(tp=0), "shape.tp=0"),
])
def test_refuses_what_vllm_refuses_with_the_value_named(kw, words):
    with pytest.raises(UserError, match=words.replace("[", r"\[").replace("]", r"\]")):
        shape(**kw)


def test_unquantized_shape_has_no_block_constraint():
    s = shape(dtype="bf16", block_shape=None, tp=16)
    assert (s.N, s.block_shape) == (96, None)


@pytest.mark.parametrize("tp, N, block", [
    (1, 1536, (128, 128)),
    (4, 384, (128, 128)),
    (8, 192, (64, 64)),    # MiniMax-M2 TP8: a shard of 1.5 blocks; vLLM refines the scales
    (16, 96, (32, 32)),
])
def test_a_shard_of_partial_blocks_runs_with_refined_blocks_as_in_vllm(tp, N, block):
    # vLLM 0.33 (fused_moe/oracle/fp8.py) refines [128,128] to [g,g], g = gcd(128, N, K) >= 32,
    # and looks the file up under the refined block_shape.
    s = shape(tp=tp)
    assert (s.N, s.block_shape) == (N, block)
