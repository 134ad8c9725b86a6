"""Input builders: shapes, dtypes and scales per weight dtype; routing; expert maps; rotation."""

import pytest
import torch

from autotune.kernel import (
    ExpertWeights,
    dequantize_weights,
    make_expert_map,
    make_inputs,
    make_routing,
    make_weights,
)


@pytest.mark.parametrize(
    "dtype, block_shape, w_dtype, w1_scale_shape",
    [
        ("bf16", None, torch.bfloat16, None),
        ("fp16", None, torch.float16, None),
        ("fp8_w8a8", None, torch.float8_e4m3fn, (4,)),
        ("fp8_w8a8", (128, 128), torch.float8_e4m3fn, (4, 2, 3)),
        ("int8_w8a16", None, torch.int8, (4, 144)),
    ],
)
def test_weight_shapes_and_scales(dtype, block_shape, w_dtype, w1_scale_shape):
    w = make_weights(4, 72, 300, dtype, block_shape=block_shape)
    assert w.w1.shape == (4, 144, 300) and w.w2.shape == (4, 300, 72)
    assert w.w1.dtype == w_dtype == w.w2.dtype
    assert (w.w1_scale is None) == (w1_scale_shape is None)
    if w1_scale_shape is not None:
        assert tuple(w.w1_scale.shape) == w1_scale_shape and w.w1_scale.dtype == torch.float32
    w1, _ = dequantize_weights(w)
    # N(0, 1/fan_in) survives quantization: the dequantized values keep that scale.
    assert 0.8 < w1.std().item() * 300**0.5 < 1.2


def test_uniform_routing_is_renormalized_top_k():
    ids, weights = make_routing(64, 16, 4, seed=1)
    assert ids.dtype == torch.int32 and weights.dtype == torch.float32
    assert ids.shape == weights.shape == (64, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(64))
    assert all(len(set(row)) == 4 for row in ids.tolist())  # distinct experts per token


def test_skewed_routing_concentrates_on_popular_experts():
    uniform, _ = make_routing(2000, 32, 2, seed=2)
    skewed, _ = make_routing(2000, 32, 2, routing="skewed", skew=2.0, seed=2)
    top_uniform = torch.bincount(uniform.flatten().long(), minlength=32).max().item()
    top_skewed = torch.bincount(skewed.flatten().long(), minlength=32).max().item()
    assert top_skewed > 3 * top_uniform


def test_routing_rejects_bad_arguments():
    with pytest.raises(ValueError, match="routing"):
        make_routing(4, 8, 2, routing="zipf")
    with pytest.raises(ValueError, match="topk"):
        make_routing(4, 8, 9)


def test_expert_map_places_a_contiguous_chunk():
    expert_map = make_expert_map(8, 3, rank=2)
    assert expert_map.tolist() == [-1, -1, -1, -1, -1, -1, 0, 1]
    with pytest.raises(ValueError):
        make_expert_map(8, 3, rank=3)


def test_inputs_with_expert_parallelism_and_rotation():
    inputs = make_inputs(16, 40, 96, 4, 10, "fp8_w8a8", (128, 128), ep_experts=4, seed=3)
    assert inputs.num_local_experts == 4 and inputs.num_experts == 16
    assert inputs.x.dtype == torch.bfloat16 and inputs.x.shape == (10, 96)
    copy = inputs.with_weights(inputs.weights.clone())
    assert copy.weights.w1.data_ptr() != inputs.weights.w1.data_ptr()
    assert torch.equal(copy.weights.w1.view(torch.uint8), inputs.weights.w1.view(torch.uint8))
    assert copy.topk_ids is inputs.topk_ids
    assert isinstance(copy.weights, ExpertWeights) and copy.weights.nbytes == inputs.weights.nbytes


def test_inputs_reject_inconsistent_shapes():
    inputs = make_inputs(4, 40, 96, 2, 3, "fp16")
    with pytest.raises(ValueError, match="shape mismatch"):
        inputs.with_weights(make_weights(4, 40, 64, "fp16"))
    with pytest.raises(ValueError, match="expert_map"):
        make_inputs(4, 40, 96, 2, 3, "fp16").__class__(
            inputs.x, inputs.topk_ids, inputs.topk_weights, make_weights(2, 40, 96, "fp16"), 4
        )
