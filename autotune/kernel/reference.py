"""A plain PyTorch MoE to check the kernel against, and the error measure for the check.

:func:`reference_align` is the alignment (grouping pairs by expert) in plain torch ops.
:func:`reference_moe` gathers each expert's pairs, multiplies in fp32 with the dequantized
weights (exactly the values the kernel reads), applies silu-and-mul, the second matmul and the
routing weights, and sums over the top-k slots. It loops over experts: clear, not fast.

By default activations stay in fp32 throughout, so the error against it includes the kernel's
activation rounding (fp8 activations: about 4-6 %). With ``match_kernel_precision=True`` the
reference rounds and quantizes activations at the same points as the kernel (quantized x, cache1
in the activation dtype, re-quantized intermediate, cache3 in the activation dtype), leaving only
accumulation order and rare rounding-boundary flips: a tight check of indexing and scales.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .align import AlignedRouting, aligned_buffer_length, check_align_args
from .inputs import ExpertWeights, MoEInputs
from .quant import FP8_DTYPE, FP8_EPS, FP8_MAX


def dequantize_weights(weights: ExpertWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 (w1 [E, 2N, H], w2 [E, H, N]) holding the values the kernel multiplies with."""

    def dequantize(w: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        w = w.float()
        if weights.dtype in ("bf16", "fp16"):
            return w
        if weights.dtype == "int8_w8a16":
            return w * scale[:, :, None]
        if weights.block_shape is None:
            return w * scale[:, None, None]
        bn, bk = weights.block_shape
        rows, cols = w.shape[1], w.shape[2]
        full = scale.repeat_interleave(bn, dim=1).repeat_interleave(bk, dim=2)
        return w * full[:, :rows, :cols]

    return dequantize(weights.w1, weights.w1_scale), dequantize(weights.w2, weights.w2_scale)


def _fake_quant_fp8(x: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """x (fp32 [rows, cols]) quantized to fp8 like the kernel's activations, then dequantized."""
    if group_size is None:
        scale = x.abs().amax().clamp(min=FP8_EPS) / FP8_MAX
        return (x / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE).float() * scale
    rows, cols = x.shape
    groups = -(-cols // group_size)
    padded = F.pad(x, (0, groups * group_size - cols)).view(rows, groups, group_size)
    scale = padded.abs().amax(dim=2, keepdim=True).clamp(min=FP8_EPS) / FP8_MAX
    q = (padded / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE).float() * scale
    return q.view(rows, groups * group_size)[:, :cols]


def reference_moe(inputs: MoEInputs, *, match_kernel_precision: bool = False) -> torch.Tensor:
    """The MoE output [M, H] in fp32; see the module docstring for ``match_kernel_precision``."""
    weights = inputs.weights
    w1, w2 = dequantize_weights(weights)
    act_dtype = inputs.x.dtype
    fp8 = weights.dtype == "fp8_w8a8"
    group = weights.block_shape[1] if weights.block_shape is not None else None

    def round_act(t: torch.Tensor) -> torch.Tensor:
        return t.to(act_dtype).float() if match_kernel_precision else t

    x = inputs.x.float()
    if match_kernel_precision and fp8:
        x = _fake_quant_fp8(x, group)

    num_tokens, topk, n = inputs.num_tokens, inputs.topk, inputs.intermediate_size
    ids = inputs.topk_ids.reshape(-1).long()
    local = ids if inputs.expert_map is None else inputs.expert_map.long()[ids]
    token_of_pair = torch.arange(ids.numel(), device=ids.device) // topk

    # Per-tensor fp8 quantizes the whole intermediate at once, so GEMM1 runs for all experts first.
    hidden = torch.zeros(ids.numel(), n, dtype=torch.float32, device=x.device)
    for expert in range(inputs.num_local_experts):
        pairs = (local == expert).nonzero().flatten()
        if pairs.numel():
            gate_up = round_act(x[token_of_pair[pairs]] @ w1[expert].T)
            hidden[pairs] = F.silu(gate_up[:, :n]) * gate_up[:, n:]
    if match_kernel_precision and fp8:
        hidden = _fake_quant_fp8(round_act(hidden) if group is None else hidden, group)
    else:
        hidden = round_act(hidden)

    out_pairs = torch.zeros(ids.numel(), inputs.hidden_size, dtype=torch.float32, device=x.device)
    weight_of_pair = inputs.topk_weights.reshape(-1).float()
    for expert in range(inputs.num_local_experts):
        pairs = (local == expert).nonzero().flatten()
        if pairs.numel():
            y = (hidden[pairs] @ w2[expert].T) * weight_of_pair[pairs, None]
            out_pairs[pairs] = round_act(y)
    return out_pairs.view(num_tokens, topk, -1).sum(dim=1)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in fp32; inf when out has a non-finite element (poison found)."""
    out, ref = out.float(), ref.float()
    if not torch.isfinite(out).all():
        return float("inf")
    denom = torch.linalg.vector_norm(ref).item()
    diff = torch.linalg.vector_norm(out - ref).item()
    return diff / denom if denom > 0 else diff


def reference_align(
    topk_ids: torch.Tensor,
    block_size_m: int,
    num_experts: int,
    expert_map: torch.Tensor | None = None,
) -> AlignedRouting:
    """:func:`~.align.moe_align` in vectorized torch ops (a stable sort): what the kernel must equal.

    On a GPU this is about a dozen small kernels, a radix sort among them (the Triton version is
    two launches). Arguments as :func:`~.align.moe_align`.
    """
    check_align_args(topk_ids, block_size_m)
    device = topk_ids.device
    flat = topk_ids.reshape(-1).to(torch.int64)
    num_pairs = flat.numel()
    length = aligned_buffer_length(num_pairs, num_experts, block_size_m)

    counts = torch.zeros(num_experts, dtype=torch.int64, device=device)
    counts.scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts + block_size_m - 1) // block_size_m * block_size_m
    padded_end = torch.cumsum(padded, 0)
    padded_start = padded_end - padded
    unpadded_start = torch.cumsum(counts, 0) - counts

    # A stable sort keeps each expert's pairs in pair order (any order would be correct).
    expert_of_sorted, pair_of_sorted = torch.sort(flat, stable=True)
    rank_in_expert = torch.arange(num_pairs, device=device) - unpadded_start[expert_of_sorted]
    destination = padded_start[expert_of_sorted] + rank_in_expert
    sorted_token_ids = torch.full((length,), num_pairs, dtype=torch.int32, device=device)
    sorted_token_ids.scatter_(0, destination, pair_of_sorted.to(torch.int32))

    # Block b holds the expert whose padded range contains row b * block_size_m.
    block_start = torch.arange(0, length, block_size_m, device=device)
    block_expert = torch.searchsorted(padded_end, block_start, right=True)
    used = block_start < padded_end[-1]
    block_expert = block_expert.clamp_(max=num_experts - 1)
    if expert_map is not None:
        block_expert = expert_map.to(device=device, dtype=torch.int64)[block_expert]
    expert_ids = torch.where(used, block_expert, -1).to(torch.int32)

    num_tokens_post_padded = padded_end[-1:].to(torch.int32)
    return AlignedRouting(
        sorted_token_ids=sorted_token_ids,
        expert_ids=expert_ids,
        num_tokens_post_padded=num_tokens_post_padded,
        block_size_m=block_size_m,
        num_pairs=num_pairs,
    )
