"""Alignment of (token, slot) pairs by expert: the invariants the GEMM kernel relies on, and the
Triton kernel equal to the plain torch version (a stable sort) on every case."""

import pytest
import torch

from autotune.kernel import (
    aligned_buffer_length,
    make_expert_map,
    make_routing,
    moe_align,
    naive_routing,
    reference_align,
    use_naive_assignment,
)
from autotune.kernel.align import _align_launch_sizes
from autotune.kernel.quant import interpreting

# The kernels run where the suite runs them: the CPU under the interpreter, else the GPU.
DEVICE = "cpu" if interpreting() or not torch.cuda.is_available() else "cuda"


def assert_same_routing(got, want):
    assert torch.equal(got.sorted_token_ids, want.sorted_token_ids)
    assert torch.equal(got.expert_ids, want.expert_ids)
    assert torch.equal(got.num_tokens_post_padded, want.num_tokens_post_padded)
    assert (got.block_size_m, got.num_pairs, got.naive) == (want.block_size_m, want.num_pairs, False)


def test_matches_vllm_docstring_example():
    # vLLM's moe_align_block_size docstring: 4 tokens, top-3, block 4, experts 1..4 (of 5).
    topk_ids = torch.tensor([[2, 3, 4], [1, 2, 4], [1, 3, 4], [1, 2, 3]], dtype=torch.int32)
    routing = moe_align(topk_ids.to(DEVICE), 4, 5)
    used = routing.sorted_token_ids[:16].tolist()
    assert used == [3, 6, 9, 12, 0, 4, 10, 12, 1, 7, 11, 12, 2, 5, 8, 12]
    assert routing.expert_ids[:4].tolist() == [1, 2, 3, 4]
    assert routing.num_tokens_post_padded.item() == 16


@pytest.mark.parametrize(
    "num_pairs, num_experts, block, expected",
    [
        (12, 5, 4, 28),  # 12 + 5 * 3 = 27, rounded up to 28
        (8, 256, 16, 128),  # fewer pairs than experts: at most 8 * 16
        (512, 256, 16, 4352),  # 512 + 256 * 15
        (1, 1, 64, 64),
    ],
)
def test_buffer_length_rule(num_pairs, num_experts, block, expected):
    assert aligned_buffer_length(num_pairs, num_experts, block) == expected


def check_alignment(topk_ids, block, num_experts, expert_map=None):
    topk_ids = topk_ids.to(DEVICE)
    expert_map = None if expert_map is None else expert_map.to(DEVICE)
    routing = moe_align(topk_ids, block, num_experts, expert_map)
    assert_same_routing(routing, reference_align(topk_ids, block, num_experts, expert_map))
    flat = topk_ids.reshape(-1).long()
    num_pairs = flat.numel()
    ids = routing.sorted_token_ids.long()
    assert ids.numel() == aligned_buffer_length(num_pairs, num_experts, block)
    assert routing.expert_ids.numel() == ids.numel() // block
    total = routing.num_tokens_post_padded.item()
    counts = torch.bincount(flat, minlength=num_experts)
    assert total == int(((counts + block - 1) // block * block).sum())

    # Every pair exactly once, the rest is the sentinel M * topk.
    real = ids[ids < num_pairs]
    assert sorted(real.tolist()) == list(range(num_pairs))
    assert (ids[ids >= num_pairs] == num_pairs).all()
    assert (ids[total:] == num_pairs).all()

    # Each used block holds one expert's pairs; experts ascend; expert ids match (mapped).
    previous = -1
    for b in range(total // block):
        block_pairs = ids[b * block : (b + 1) * block]
        block_pairs = block_pairs[block_pairs < num_pairs]
        assert block_pairs.numel() > 0, "a block made only of padding"
        experts = flat[block_pairs].unique()
        assert experts.numel() == 1
        expert = experts.item()
        assert expert >= previous
        previous = expert
        want = expert if expert_map is None else expert_map[expert].item()
        assert routing.expert_ids[b].item() == want
    assert (routing.expert_ids[total // block :] == -1).all()
    return routing


@pytest.mark.parametrize("block", [16, 32, 64])
@pytest.mark.parametrize(
    "num_tokens, num_experts, topk", [(1, 8, 2), (3, 64, 8), (16, 8, 2), (100, 16, 4)]
)
def test_alignment_invariants(num_tokens, num_experts, topk, block):
    topk_ids, _ = make_routing(num_tokens, num_experts, topk, seed=num_tokens * 31 + block)
    check_alignment(topk_ids, block, num_experts)


@pytest.mark.parametrize(
    "num_tokens, num_experts, topk, block, routing, ep",
    [
        (600, 512, 8, 16, "uniform", None),  # E=512: 32-pair steps, 30 chunks of 5 steps
        (1100, 16, 8, 16, "uniform", None),  # 8800 pairs over 16 experts: 2 steps per chunk
        (700, 64, 8, 32, "skewed", None),  # a few experts take most pairs
        (1000, 256, 8, 128, "uniform", 100),  # expert parallelism, big blocks
    ],
)
def test_many_chunks_match_the_stable_sort(num_tokens, num_experts, topk, block, routing, ep):
    topk_ids, _ = make_routing(num_tokens, num_experts, topk, routing=routing, skew=2.0,
                               seed=num_experts)  # fmt: skip
    expert_map = None if ep is None else make_expert_map(num_experts, ep, rank=1)
    check_alignment(topk_ids, block, num_experts, expert_map)
    sizes = _align_launch_sizes(topk_ids.numel(), num_experts)
    assert sizes["num_chunks"] > 1  # the cross-chunk offsets are what this test is about


def test_launch_sizes_bound_the_tiles():
    for num_experts in (1, 8, 128, 256, 512, 1024):
        for num_pairs in (1, 100, 8192, 40000):
            s = _align_launch_sizes(num_pairs, num_experts)
            assert s["E_POW2"] >= num_experts and s["SUB"] * s["E_POW2"] <= 16384
            assert s["num_chunks"] <= s["C_POW2"] and s["C_POW2"] * s["E_POW2"] <= 16384
            assert s["num_chunks"] * s["steps"] * s["SUB"] >= num_pairs  # every pair covered
            assert (s["num_chunks"] - 1) * s["steps"] * s["SUB"] < num_pairs  # no empty chunk


def test_int64_ids_and_empty_routing():
    topk_ids, _ = make_routing(50, 32, 4, seed=9)
    check_alignment(topk_ids.long(), 16, 32)
    empty = moe_align(torch.empty(0, 4, dtype=torch.int32, device=DEVICE), 16, 32)
    assert empty.sorted_token_ids.numel() == 0 and empty.num_tokens_post_padded.item() == 0


def test_experts_without_tokens_get_no_blocks():
    topk_ids = torch.tensor([[0, 5], [5, 7], [0, 7]], dtype=torch.int32)
    routing = check_alignment(topk_ids, 16, 8)
    assert routing.num_tokens_post_padded.item() == 3 * 16
    assert routing.expert_ids[:3].tolist() == [0, 5, 7]


def test_expert_parallel_blocks_of_other_gpus_are_minus_one():
    topk_ids, _ = make_routing(40, 16, 4, seed=3)
    expert_map = make_expert_map(16, 4, rank=1)  # global 4..7 are local 0..3
    routing = check_alignment(topk_ids, 16, 16, expert_map)
    total_blocks = routing.num_tokens_post_padded.item() // 16
    used = routing.expert_ids[:total_blocks]
    assert ((used == -1) | ((used >= 0) & (used < 4))).all()
    assert (used == -1).any() and (used >= 0).any()


def test_naive_assignment_rule_and_layout():
    assert use_naive_assignment(8, 32)  # M=1, top-8, E=32: 8 * 4 <= 32
    assert not use_naive_assignment(9, 32)
    assert not use_naive_assignment(8, 32, expert_map=make_expert_map(32, 16))
    topk_ids = torch.tensor([[3, 1]], dtype=torch.int32)
    routing = naive_routing(topk_ids, 16)
    assert routing.naive and routing.expert_ids.tolist() == [3, 1]
    assert routing.num_tokens_post_padded.item() == 2 * 16
    assert routing.em == 2 * 16
