"""Grouping the (token, slot) pairs of a routing by expert, padded to BLOCK_SIZE_M.

The GEMM kernel works on row blocks of BLOCK_SIZE_M pairs that all use one expert's weights. This
module builds the three tensors that describe those blocks, with exactly vLLM's semantics
(``moe_align_block_size``):

- ``sorted_token_ids`` int32 [L]: flat pair indices p = token * topk + slot, grouped by expert; each
  expert's group is padded to a multiple of BLOCK_SIZE_M with the sentinel ``M * topk``;
- ``expert_ids`` int32 [L // BLOCK_SIZE_M]: the expert of each row block, as a local expert index
  (-1 where the expert is not on this GPU under expert parallelism: the kernel writes zeros);
- ``num_tokens_post_padded`` int32 [1]: the used length; blocks at or past it exit at once.

L (the buffer length) is ``M*topk + E*(BLOCK_SIZE_M - 1)``, at most ``M*topk*BLOCK_SIZE_M`` when
``M*topk < E``, rounded up to a multiple of BLOCK_SIZE_M. It depends only on sizes, never on the
routing, so the launch grid is known without reading the GPU.

:func:`moe_align` is two Triton launches with no host synchronization, so a whole MoE call can be
captured in a CUDA graph; the plain torch version it must equal is
:func:`~.reference.reference_align`. vLLM's small-M shortcut (no alignment at all, one pair per
row block) is :func:`naive_routing`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from autotune.problem.vllm_rules import naive_assignment

from .launch import launch


@dataclass(frozen=True)
class AlignedRouting:
    """Row blocks of (token, slot) pairs for the GEMM kernel; see the module docstring."""

    sorted_token_ids: torch.Tensor  # int32 [L]; unused (empty) when naive
    expert_ids: torch.Tensor  # int32 [L // BLOCK_SIZE_M], or [num_pairs] when naive
    num_tokens_post_padded: torch.Tensor  # int32 [1]
    block_size_m: int
    num_pairs: int  # M * topk, also the padding sentinel
    naive: bool = False  # one pair per row block (vLLM's small-M shortcut)

    @property
    def em(self) -> int:
        """Rows of the padded pair buffer: the M extent of the launch grid."""
        if self.naive:
            return self.num_pairs * self.block_size_m
        return self.sorted_token_ids.numel()


def aligned_buffer_length(num_pairs: int, num_experts: int, block_size_m: int) -> int:
    """Length of ``sorted_token_ids`` for ``num_pairs`` pairs over ``num_experts`` experts."""
    length = num_pairs + num_experts * (block_size_m - 1)
    if num_pairs < num_experts:
        # At most num_pairs experts can be non-empty, each padding to one block per pair.
        length = min(length, num_pairs * block_size_m)
    return -(-length // block_size_m) * block_size_m


def use_naive_assignment(
    num_pairs: int, num_experts: int, expert_map: torch.Tensor | None = None
) -> bool:
    """vLLM's rule for skipping alignment (:func:`autotune.problem.vllm_rules.naive_assignment`): then
    almost every pair has its own expert and padding each to a block would waste the grid."""
    return naive_assignment(num_pairs, num_experts, expert_map=expert_map is not None)


@triton.jit(do_not_specialize=["num_pairs", "length", "steps", "fill_span"])
def _align_count_kernel(
    topk_ids_ptr,  # int [num_pairs] global expert of each pair
    chunk_counts_ptr,  # int32 [num_chunks, E_POW2] out: pairs per expert in each chunk
    sorted_token_ids_ptr,  # int32 [length] out: filled with the sentinel num_pairs
    num_pairs,
    length,
    steps,  # SUB-pair steps per chunk
    fill_span,  # entries of sorted_token_ids each program fills
    E_POW2: tl.constexpr,
    SUB: tl.constexpr,
    FILL: tl.constexpr,
):
    # Program c counts the pairs of chunk c (steps * SUB consecutive pairs) per expert, and fills
    # its share of the output with the sentinel (the scatter kernel, launched next, overwrites
    # the real pairs' slots).
    chunk = tl.program_id(0)
    experts = tl.arange(0, E_POW2)
    counts = tl.zeros((E_POW2,), dtype=tl.int32)
    first = chunk * steps * SUB
    for step in range(steps):
        offs = first + step * SUB + tl.arange(0, SUB)
        ids = tl.load(topk_ids_ptr + offs, mask=offs < num_pairs, other=-1).to(tl.int32)
        counts += tl.sum((ids[:, None] == experts[None, :]).to(tl.int32), axis=0)
    tl.store(chunk_counts_ptr + chunk * E_POW2 + experts, counts)

    sentinel = tl.zeros((FILL,), dtype=tl.int32) + num_pairs
    fill_start = chunk * fill_span
    fill_end = tl.minimum(fill_start + fill_span, length)
    for start in range(fill_start, fill_end, FILL):
        offs = start + tl.arange(0, FILL)
        tl.store(sorted_token_ids_ptr + offs, sentinel, mask=offs < fill_end)


@triton.jit(do_not_specialize=["num_pairs", "num_chunks", "steps", "num_blocks", "block_span"])
def _align_scatter_kernel(
    topk_ids_ptr,
    chunk_counts_ptr,  # from _align_count_kernel
    expert_map_ptr,  # int [num_experts] local expert or -1 (only read when HAS_EXPERT_MAP)
    sorted_token_ids_ptr,  # int32 [length]: pair ids grouped by expert, in pair order
    expert_ids_ptr,  # int32 [num_blocks]
    num_tokens_post_padded_ptr,  # int32 [1]
    num_pairs,
    num_experts,
    num_chunks,
    steps,
    num_blocks,  # length // BLOCK_SIZE_M
    block_span,  # expert_ids entries each program writes
    E_POW2: tl.constexpr,
    C_POW2: tl.constexpr,  # >= num_chunks
    SUB: tl.constexpr,
    BLOCK_SIZE_M: tl.constexpr,
    HAS_EXPERT_MAP: tl.constexpr,
):
    chunk = tl.program_id(0)
    experts = tl.arange(0, E_POW2)
    chunks = tl.arange(0, C_POW2)
    # Every program reads the whole (small) count table: the padded layout follows from the
    # totals, and this chunk's pairs of expert e go after those of the chunks before it.
    table = tl.load(
        chunk_counts_ptr + chunks[:, None] * E_POW2 + experts[None, :],
        mask=chunks[:, None] < num_chunks,
        other=0,
    )
    totals = tl.sum(table, axis=0)
    before = tl.sum(tl.where(chunks[:, None] < chunk, table, 0), axis=0)
    padded = (totals + BLOCK_SIZE_M - 1) // BLOCK_SIZE_M * BLOCK_SIZE_M
    padded_end = tl.cumsum(padded, axis=0)
    total = tl.sum(padded, axis=0)
    offset = padded_end - padded + before  # next free slot of each expert for this chunk

    # Scatter: a pair's slot is its expert's offset plus the earlier pairs of the same expert in
    # its step, so every expert's pairs stay in pair order (as a stable sort would leave them).
    lane = tl.arange(0, SUB)
    first = chunk * steps * SUB
    for step in range(steps):
        offs = first + step * SUB + lane
        valid = offs < num_pairs
        ids = tl.load(topk_ids_ptr + offs, mask=valid, other=-1).to(tl.int32)
        onehot = ids[:, None] == experts[None, :]
        base = tl.sum(tl.where(onehot, offset[None, :], 0), axis=1)
        earlier = (ids[:, None] == ids[None, :]) & (lane[None, :] < lane[:, None])
        slot = base + tl.sum(earlier.to(tl.int32), axis=1)
        tl.store(sorted_token_ids_ptr + slot, offs.to(tl.int32), mask=valid)
        offset += tl.sum(onehot.to(tl.int32), axis=0)

    # Row block b belongs to the expert whose padded range holds row b * BLOCK_SIZE_M.
    block_start = chunk * block_span
    block_end = tl.minimum(block_start + block_span, num_blocks)
    for start in range(block_start, block_end, SUB):
        blocks = start + lane
        row = blocks * BLOCK_SIZE_M
        expert = tl.sum((padded_end[None, :] <= row[:, None]).to(tl.int32), axis=1)
        expert = tl.minimum(expert, num_experts - 1)
        used = row < total
        if HAS_EXPERT_MAP:
            expert = tl.load(expert_map_ptr + expert, mask=used, other=-1).to(tl.int32)
        tl.store(expert_ids_ptr + blocks, tl.where(used, expert, -1), mask=blocks < block_end)
    if chunk == 0:
        tl.store(num_tokens_post_padded_ptr, total)


# Tiles of the alignment kernels stay at or under this many elements (registers per thread).
_ALIGN_TILE = 16384
_ALIGN_MAX_CHUNKS = 64
_ALIGN_FILL = 1024
_ALIGN_WARPS = 8  # 16K-element tiles: 64 elements per thread


def _align_launch_sizes(num_pairs: int, num_experts: int) -> dict[str, int]:
    """Chunking of the pairs over programs: a function of sizes only (no GPU read)."""
    e_pow2 = max(16, triton.next_power_of_2(num_experts))
    sub = min(128, max(16, _ALIGN_TILE // e_pow2))  # [SUB, E_POW2] one-hot tiles
    c_pow2 = min(_ALIGN_MAX_CHUNKS, max(1, _ALIGN_TILE // e_pow2))  # [C_POW2, E_POW2] table
    num_sub = triton.cdiv(num_pairs, sub)
    steps = triton.cdiv(num_sub, min(num_sub, c_pow2))
    num_chunks = triton.cdiv(num_sub, steps)
    return dict(E_POW2=e_pow2, SUB=sub, C_POW2=c_pow2, steps=steps, num_chunks=num_chunks)


def check_align_args(topk_ids: torch.Tensor, block_size_m: int) -> None:
    """The argument checks every alignment implementation shares."""
    if topk_ids.dim() != 2:
        raise ValueError(f"topk_ids must be [M, topk], got shape {tuple(topk_ids.shape)}")
    if block_size_m < 1:
        raise ValueError(f"block_size_m must be positive, got {block_size_m}")


def moe_align(
    topk_ids: torch.Tensor,
    block_size_m: int,
    num_experts: int,
    expert_map: torch.Tensor | None = None,
) -> AlignedRouting:
    """Group the pairs of ``topk_ids`` by expert, each group padded to ``block_size_m``.

    Two Triton launches, no host synchronization (graph-capturable): per-chunk expert counts
    (and the sentinel fill), then the prefix sums, the scatter in pair order and the block
    experts. The result equals :func:`~.reference.reference_align` (a stable sort) exactly.

    Args:
        topk_ids: int [M, topk], global expert ids in ``[0, num_experts)``.
        block_size_m: the kernel's BLOCK_SIZE_M.
        num_experts: global number of experts (the id range of ``topk_ids``).
        expert_map: optional int32 [num_experts]: local expert index, or -1 for an expert that is
            not on this GPU. Blocks of such experts get expert id -1.
    """
    check_align_args(topk_ids, block_size_m)
    device = topk_ids.device
    flat = topk_ids.reshape(-1)
    num_pairs = flat.numel()
    length = aligned_buffer_length(num_pairs, num_experts, block_size_m)
    num_blocks = length // block_size_m
    sorted_token_ids = torch.empty(length, dtype=torch.int32, device=device)
    expert_ids = torch.empty(num_blocks, dtype=torch.int32, device=device)
    # Written by the scatter kernel; only an empty routing needs it zeroed here.
    alloc = torch.zeros if num_pairs == 0 else torch.empty
    num_tokens_post_padded = alloc(1, dtype=torch.int32, device=device)
    routing = AlignedRouting(
        sorted_token_ids=sorted_token_ids,
        expert_ids=expert_ids,
        num_tokens_post_padded=num_tokens_post_padded,
        block_size_m=block_size_m,
        num_pairs=num_pairs,
    )
    if num_pairs == 0:
        return routing
    sizes = _align_launch_sizes(num_pairs, num_experts)
    num_chunks, steps = sizes["num_chunks"], sizes["steps"]
    chunk_counts = torch.empty(num_chunks, sizes["E_POW2"], dtype=torch.int32, device=device)
    launch(
        _align_count_kernel,
        (num_chunks,),
        flat,
        chunk_counts,
        sorted_token_ids,
        num_pairs,
        length,
        steps,
        triton.cdiv(length, num_chunks),
        E_POW2=sizes["E_POW2"],
        SUB=sizes["SUB"],
        FILL=_ALIGN_FILL,
        num_warps=_ALIGN_WARPS,
    )
    launch(
        _align_scatter_kernel,
        (num_chunks,),
        flat,
        chunk_counts,
        expert_map,
        sorted_token_ids,
        expert_ids,
        num_tokens_post_padded,
        num_pairs,
        num_experts,
        num_chunks,
        steps,
        num_blocks,
        triton.cdiv(num_blocks, num_chunks),
        E_POW2=sizes["E_POW2"],
        C_POW2=sizes["C_POW2"],
        SUB=sizes["SUB"],
        BLOCK_SIZE_M=block_size_m,
        HAS_EXPERT_MAP=expert_map is not None,
        num_warps=_ALIGN_WARPS,
    )
    return routing


def naive_routing(topk_ids: torch.Tensor, block_size_m: int) -> AlignedRouting:
    """vLLM's small-M shortcut: row block p holds pair p alone (its other rows are padding).

    The expert of block p is ``topk_ids.flatten()[p]``; ``num_tokens_post_padded`` covers every
    block, so none exits early. Only valid without an expert map (ids are local = global).
    """
    flat = topk_ids.reshape(-1).to(torch.int32)
    num_pairs = flat.numel()
    return AlignedRouting(
        sorted_token_ids=flat.new_empty(0),
        expert_ids=flat,
        num_tokens_post_padded=torch.full(
            (1,), num_pairs * block_size_m, dtype=torch.int32, device=flat.device
        ),
        block_size_m=block_size_m,
        num_pairs=num_pairs,
        naive=True,
    )
