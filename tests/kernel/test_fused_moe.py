"""The fused-MoE kernel against the plain PyTorch reference.

Every case draws its own random inputs (seeded from its id), poisons the kernel's buffers with NaN
so an element the kernel fails to write shows up as an infinite error, and compares with
:func:`reference_moe` twice: with ``match_kernel_precision`` (activations rounded and quantized
where the kernel does it: catches indexing and scale bugs) and plain fp32 (the honest end-to-end
error, loose for fp8 activations).

Under the interpreter bf16 is avoided: ``tl.dot`` on bf16 returns garbage there (Triton 3.6 and
3.9), and its fp32 -> bf16 cast truncates instead of rounding, so fp16 activations stand in.
"""

import zlib

import pytest
import torch

from autotune.kernel import (
    MoEPlan,
    kernel_config,
    make_inputs,
    make_routing,
    moe_align,
    moe_gemm,
    naive_routing,
    reference_moe,
    relative_error,
    shared_memory_bytes,
    use_naive_assignment,
)
from autotune.kernel.quant import interpreting

F16, BF16 = torch.float16, torch.bfloat16
BLOCK = (128, 128)
BF16_DOT_REASON = (
    "tl.dot on bf16 returns garbage under TRITON_INTERPRET=1 (Triton 3.6 and 3.9): CUDA only"
)


def config(bm, bn, bk, group=1, warps=4, stages=3, swap=False):
    cfg = dict(BLOCK_SIZE_M=bm, BLOCK_SIZE_N=bn, BLOCK_SIZE_K=bk, GROUP_SIZE_M=group,
               num_warps=warps, num_stages=stages)  # fmt: skip
    if swap:
        cfg["SWAP_AB"] = True
    return cfg


SMALLEST = config(16, 32, 16, stages=2)  # many K steps, masked K edge
SMALLEST_FP8 = config(16, 32, 32, stages=2)  # fp8 tl.dot needs K >= 32 on the GPU
# BLOCK_SIZE_M=8, as vLLM's shipped files hold at small M (E=256,N=256 H200 at M=1: this one).
EIGHT_ROWS = config(8, 32, 128, stages=4)
EIGHT_ROWS_SWAP = config(8, 64, 128, stages=4, swap=True)
MID = config(32, 64, 64, group=8)
SWAP = config(16, 64, 128, group=16, swap=True)
LARGE = config(128, 128, 256, warps=8)  # BLOCK_SIZE_K 256 -> 128 with block quantization
# The largest tile that fits an H200's shared memory in 16 bits (256x256x256 does not).
LARGEST = config(256, 128, 128, warps=8, stages=2)

# (id, M, E, topk, H, N, weight dtype, block_shape, activation dtype, config, EP local experts)
# H and N are never multiples of the tiles; several cases leave experts without tokens.
CASES = [
    ("m1-top1-fp16-naive", 1, 8, 1, 96, 48, "fp16", None, F16, SMALLEST, None),
    ("m3-top2-fp16-empty-experts", 3, 16, 2, 200, 72, "fp16", None, F16, MID, None),
    ("m16-top8-fp16-swap", 16, 16, 8, 136, 40, "fp16", None, F16, SWAP, None),
    ("m100-top2-fp16-large", 100, 8, 2, 200, 72, "fp16", None, F16, LARGE, None),
    ("m100-top2-fp16-ep", 100, 8, 2, 96, 48, "fp16", None, F16, MID, 3),
    ("m1-top8-fp8block-naive", 1, 32, 8, 200, 160, "fp8_w8a8", BLOCK, F16, MID, None),
    ("m3-top2-fp8block-smallest", 3, 16, 2, 200, 160, "fp8_w8a8", BLOCK, F16, SMALLEST_FP8, None),
    ("m16-top8-fp8block-swap", 16, 16, 8, 200, 160, "fp8_w8a8", BLOCK, F16, SWAP, None),
    ("m100-top2-fp8block-ep-large", 100, 16, 2, 300, 136, "fp8_w8a8", BLOCK, F16, LARGE, 6),
    ("m16-top2-fp8block-bf16-act", 16, 8, 2, 200, 160, "fp8_w8a8", BLOCK, BF16, MID, None),
    ("m3-top8-fp8tensor", 3, 16, 8, 200, 72, "fp8_w8a8", None, F16, MID, None),
    ("m100-top2-fp8tensor-swap", 100, 8, 2, 96, 48, "fp8_w8a8", None, F16, SWAP, None),
    ("m1-top2-int8-naive", 1, 8, 2, 200, 72, "int8_w8a16", None, F16, SWAP, None),
    ("m16-top8-int8-ep", 16, 16, 8, 136, 40, "int8_w8a16", None, F16, MID, 8),
    ("m100-top2-int8-largest", 100, 8, 2, 200, 72, "int8_w8a16", None, F16, LARGEST, None),
    ("m16-top8-bf16", 16, 16, 8, 200, 72, "bf16", None, BF16, MID, None),
    ("m100-top2-bf16-ep-swap", 100, 8, 2, 136, 40, "bf16", None, BF16, SWAP, 5),
    ("m3-top2-int8-bf16-act", 3, 16, 2, 200, 72, "int8_w8a16", None, BF16, SMALLEST, None),
    ("m1-top8-fp8block-8rows-naive", 1, 32, 8, 200, 160, "fp8_w8a8", BLOCK, F16, EIGHT_ROWS, None),
    ("m3-top8-fp8block-8rows-swap", 3, 16, 8, 200, 160, "fp8_w8a8", BLOCK, F16, EIGHT_ROWS_SWAP,
     None),
    ("m16-top2-fp16-8rows-ep", 16, 8, 2, 136, 40, "fp16", None, F16, EIGHT_ROWS, 5),
    ("m3-top8-fp8block-bf16-act-8rows", 3, 16, 8, 200, 160, "fp8_w8a8", BLOCK, BF16, EIGHT_ROWS,
     None),
    # Blocks vLLM refines [128,128] to when a TP shard is not whole blocks (autotune/problem/shape.py).
    ("m16-top2-fp8block64-refined", 16, 8, 2, 320, 192, "fp8_w8a8", (64, 64), F16, MID, None),
    ("m3-top2-fp8block32-refined", 3, 16, 2, 160, 96, "fp8_w8a8", (32, 32), F16, SMALLEST_FP8,
     None),
]


def needs_bf16_dot(weight_dtype, act_dtype):
    return act_dtype == BF16 and weight_dtype != "fp8_w8a8"


def tolerances(weight_dtype, act_dtype):
    """(matched-precision bound, plain fp32 bound) on the relative norm error.

    Matched: bf16 intermediates round 8x coarser than fp16; Hopper's fp8 MMA accumulates each K
    step in reduced precision (seen on an H200: 7e-3 where the interpreter gives 2e-4), and an
    intermediate that lands on the other side of an fp8 rounding boundary moves a whole fp8 step.
    Plain: fp8 activations lose about 4 % per quantization, twice.
    """
    if weight_dtype == "fp8_w8a8":
        return (3e-2 if act_dtype == BF16 else 1.5e-2), 8e-2
    return (3e-2 if act_dtype == BF16 else 5e-3), 1e-2


def run_poisoned(inputs, cfg):
    plan = MoEPlan.create(inputs, cfg)
    for buffer in (plan.cache1, plan.cache3, plan.out):
        buffer.fill_(float("nan"))
    return plan()


def case_params():
    params = []
    for case in CASES:
        marks = []
        if needs_bf16_dot(case[6], case[8]):
            marks = [pytest.mark.gpu, pytest.mark.skipif(interpreting(), reason=BF16_DOT_REASON)]
        params.append(pytest.param(*case[1:], id=case[0], marks=marks))
    return params


@pytest.mark.parametrize("M, E, topk, H, N, dtype, block_shape, act, cfg, ep", case_params())
def test_matches_reference(device, request, M, E, topk, H, N, dtype, block_shape, act, cfg, ep):
    seed = zlib.crc32(request.node.callspec.id.encode())
    inputs = make_inputs(E, N, H, topk, M, dtype, block_shape, device, ep_experts=ep,
                         act_dtype=act, seed=seed)  # fmt: skip
    out = run_poisoned(inputs, cfg)
    assert out.shape == (M, H) and out.dtype == act
    matched_tol, plain_tol = tolerances(dtype, act)
    err_matched = relative_error(out, reference_moe(inputs, match_kernel_precision=True))
    err_plain = relative_error(out, reference_moe(inputs))
    assert err_matched < matched_tol, f"matched-precision error {err_matched:.2e}"
    assert err_plain < plain_tol, f"fp32 reference error {err_plain:.2e}"


def test_cases_cover_the_paths_they_claim():
    for case_id, M, E, topk, *_rest, ep in CASES:
        naive = use_naive_assignment(M * topk, E, None if ep is None else object())
        assert naive == ("naive" in case_id), case_id
        if "empty-experts" in case_id:
            ids, _ = make_routing(M, E, topk, seed=zlib.crc32(case_id.encode()) + 2)
            assert ids.unique().numel() < E


@pytest.mark.parametrize(
    "cfg",
    [SMALLEST, MID, SWAP, LARGE, LARGEST],
    ids=["smallest", "mid", "swap", "large", "largest"],
)
@pytest.mark.parametrize("dtype, block_shape", [("fp16", None), ("fp8_w8a8", BLOCK)])
def test_every_config_size(device, cfg, dtype, block_shape):
    if dtype == "fp8_w8a8" and cfg is SMALLEST:
        cfg = SMALLEST_FP8
    inputs = make_inputs(8, 72, 200, 4, 24, dtype, block_shape, device, act_dtype=F16, seed=7)
    out = run_poisoned(inputs, cfg)
    err = relative_error(out, reference_moe(inputs, match_kernel_precision=True))
    assert err < tolerances(dtype, F16)[0], f"{err:.2e}"


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("naive", [False, True])
def test_gemm_writes_every_pair_row_and_zeros_for_other_gpus(device, swap, naive):
    """One GEMM launch: c[p] = a[p // topk] @ w[expert(p)]^T * weight[p]; -1 experts give 0."""
    E, M, topk, K, N = 8, 5, 2, 72, 40
    inputs = make_inputs(E, N // 2, K, topk, M, "fp16", None, device, seed=11)
    w1 = inputs.weights.w1  # [E, N, K] used as the GEMM's B
    cfg = config(16, 32, 32, swap=swap)
    flat = inputs.topk_ids.reshape(-1).long()
    if naive:
        routing, local = naive_routing(inputs.topk_ids, 16), flat
    else:
        expert_map = torch.arange(E, dtype=torch.int32, device=device)
        expert_map[::3] = -1  # experts 0, 3, 6 live elsewhere
        routing = moe_align(inputs.topk_ids, 16, E, expert_map)
        local = expert_map.long()[flat]
    c = torch.full((M * topk, N), float("nan"), dtype=F16, device=device)
    weights = inputs.topk_weights.reshape(-1)
    moe_gemm(inputs.x, w1, c, routing, cfg, top_k=topk, dtype="fp16", topk_weights=weights)
    x = inputs.x.float()
    for p in range(M * topk):
        want = torch.zeros(N, device=device)
        if local[p] >= 0:
            want = (x[p // topk] @ w1[local[p]].float().T) * weights[p]
        torch.testing.assert_close(c[p].float(), want, atol=2e-3, rtol=2e-3)


def test_kernel_config_follows_vllm():
    cfg = kernel_config(config(16, 64, 256), "fp8_w8a8", BLOCK)
    assert cfg["BLOCK_SIZE_K"] == 128  # min(BLOCK_SIZE_K, block_k)
    assert cfg["SWAP_AB"] is False
    assert kernel_config(config(16, 64, 256), "fp16")["BLOCK_SIZE_K"] == 256
    assert kernel_config(config(16, 64, 64, swap=True), "fp16")["SWAP_AB"] is True


@pytest.mark.parametrize(
    "change, message",
    [
        ({"SPLIT_K": 1}, "unknown config keys"),
        ({"BLOCK_SIZE_N": 48}, "BLOCK_SIZE_N must be a power of two"),
        ({"BLOCK_SIZE_M": 4}, "BLOCK_SIZE_M must be a power of two >= 8"),
        ({"BLOCK_SIZE_N": 8}, "BLOCK_SIZE_N must be a power of two >= 16"),
        ({"num_warps": 3}, "num_warps"),
        ({"GROUP_SIZE_M": 0}, "GROUP_SIZE_M"),
        ({"BLOCK_SIZE_K": 16}, "BLOCK_SIZE_K must be >= 32 for fp8"),
    ],
)
def test_bad_configs_name_the_value(change, message):
    with pytest.raises(ValueError, match=message):
        kernel_config({**MID, **change}, "fp8_w8a8")
    incomplete = dict(MID)
    del incomplete["num_stages"]
    with pytest.raises(ValueError, match="missing"):
        kernel_config(incomplete, "fp16")


def test_shared_memory_estimate():
    # stages * (BM*BK*a_bytes + BK*BN*b_bytes + an mbarrier) + the epilogue's 4 bytes per column,
    # with the block-quantized BLOCK_SIZE_K.
    assert shared_memory_bytes(config(64, 128, 256, stages=4), "fp8_w8a8", BLOCK) == 4 * (
        64 * 128 + 128 * 128 + 16
    ) + 4 * 128
    assert shared_memory_bytes(config(64, 128, 64, stages=3), "bf16") == 3 * (
        2 * (64 * 64 + 64 * 128) + 16
    ) + 4 * 128
    assert shared_memory_bytes(config(16, 64, 64, stages=2), "int8_w8a16") == 2 * (
        16 * 64 * 2 + 64 * 64 + 16
    ) + 4 * 64


def test_relative_error_flags_poison():
    ref = torch.ones(4)
    assert relative_error(torch.tensor([1.0, float("nan"), 1.0, 1.0]), ref) == float("inf")
    assert relative_error(ref * 1.01, ref) == pytest.approx(0.01, rel=1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("M", [1, 64, 4096])
def test_realistic_shape_fp8_block(device, M):
    """Qwen3.5-35B-A3B at TP1: E=256 N=512 K=2048 top-8, fp8 block [128, 128]."""
    inputs = make_inputs(256, 512, 2048, 8, M, "fp8_w8a8", BLOCK, device, seed=M)
    matched, plain = reference_moe(inputs, match_kernel_precision=True), reference_moe(inputs)
    for cfg in (config(16, 64, 128, group=16), config(16, 64, 128, swap=True),
                config(64, 128, 128, group=32, stages=4)):  # fmt: skip
        out = run_poisoned(inputs, cfg)
        assert relative_error(out, matched) < 2e-2, cfg
        assert relative_error(out, plain) < 8e-2, cfg


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bf16", "int8_w8a16"])
def test_realistic_shape_bf16_activations(device, dtype):
    inputs = make_inputs(64, 1536, 3072, 8, 48, dtype, None, device, seed=5)
    out = run_poisoned(inputs, config(16, 128, 64, group=1))
    assert relative_error(out, reference_moe(inputs, match_kernel_precision=True)) < 2e-2
    assert relative_error(out, reference_moe(inputs)) < 2e-2
