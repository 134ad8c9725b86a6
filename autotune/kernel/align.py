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

Everything runs as vectorized torch ops on the routing's device with no host synchronization, so
a whole MoE call can be captured in a CUDA graph. vLLM's small-M shortcut (no alignment at all,
one pair per row block) is :func:`naive_routing`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# vLLM skips alignment when num_pairs * NAIVE_SPARSITY_FACTOR <= num_experts (and no expert map):
# then almost every pair has its own expert and padding each to a block would waste the grid.
NAIVE_SPARSITY_FACTOR = 4


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
    """vLLM's rule for skipping alignment: few pairs over many experts, no expert map."""
    return expert_map is None and num_pairs * NAIVE_SPARSITY_FACTOR <= num_experts


def moe_align(
    topk_ids: torch.Tensor,
    block_size_m: int,
    num_experts: int,
    expert_map: torch.Tensor | None = None,
) -> AlignedRouting:
    """Group the pairs of ``topk_ids`` by expert, each group padded to ``block_size_m``.

    Args:
        topk_ids: int [M, topk], global expert ids in ``[0, num_experts)``.
        block_size_m: the kernel's BLOCK_SIZE_M.
        num_experts: global number of experts (the id range of ``topk_ids``).
        expert_map: optional int32 [num_experts]: local expert index, or -1 for an expert that is
            not on this GPU. Blocks of such experts get expert id -1.
    """
    if topk_ids.dim() != 2:
        raise ValueError(f"topk_ids must be [M, topk], got shape {tuple(topk_ids.shape)}")
    if block_size_m < 1:
        raise ValueError(f"block_size_m must be positive, got {block_size_m}")
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

    # A stable sort keeps each expert's pairs in token order (any order would be correct).
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
