"""vLLM's runtime rules for the fused-MoE Triton kernel: what vLLM runs for a config file entry.

One copy of each rule, pinned to the vLLM version it was read from (:data:`VLLM_VERSION`), so that
what the tuner times, compares and writes is what vLLM serves. Each function names the vLLM
function whose behaviour it encodes (all in ``vllm/model_executor/layers/fused_moe/``); the tests
in ``tests/test_vllm_rules.py`` hold one table per rule. Pure Python, importable everywhere: the
kernel, the benchmarkers, the search and the file writer all ask this module.

- :func:`swap_ab`: the kernel variant (A and B swapped in the tile) vLLM picks by itself;
- :func:`uses_tensor_descriptors`: the opt-in tensor-descriptor path (never timed here);
- :func:`block_size_k`: the BLOCK_SIZE_K clamp under block quantization;
- :func:`naive_assignment` and :func:`grid_rows`: the small-M shortcuts;
- :func:`nearest_key`: which file entry serves M tokens;
- :func:`default_config`: what vLLM runs without a file.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

VLLM_VERSION = "0.33.0"

Capability = Optional[tuple[int, int]]  # CUDA compute capability; None: no GPU (interpreter)

# `_prepare_expert_assignment` (fused_moe.py): skip alignment when
# M * top_k * SPARSITY_FACTOR <= global experts.
SPARSITY_FACTOR = 4


def swap_ab(config: Mapping[str, int], dtype: str, capability: Capability) -> bool:
    """Whether vLLM runs this entry with SWAP_AB (its files have no such key).

    ``invoke_fused_moe_triton_kernel`` (fused_moe.py): only when ``use_fp8_w8a8`` (per-tensor or
    block fp8); then ``enable_swap_ab`` (utils.py): device capability exactly 9.0, BLOCK_SIZE_M
    < 64 and BLOCK_SIZE_N >= 64. bf16, fp16 and int8_w8a16 never swap.
    """
    return (dtype == "fp8_w8a8" and capability is not None and tuple(capability) == (9, 0)
            and int(config["BLOCK_SIZE_M"]) < 64 and int(config["BLOCK_SIZE_N"]) >= 64)


def uses_tensor_descriptors(dtype: str, capability: Capability, use_td_env: Optional[str]) -> bool:
    """Whether vLLM would take the tensor-descriptor (TMA gather) path of its kernel.

    ``resolve_moe_use_td`` (utils.py): off on CUDA unless ``VLLM_TRITON_USE_TD=1``;
    ``invoke_fused_moe_triton_kernel``: never for quantized weights; ``moe_use_td_hw_supported``:
    compiles only on capability >= 10.0. Our kernel has no such path, so a tune for a setup where
    this is True times a kernel vLLM does not run there; the report says so.
    """
    forced = use_td_env is not None and use_td_env.strip().lower() in ("1", "true")
    unquantized = dtype in ("bf16", "fp16")
    return forced and unquantized and capability is not None and tuple(capability) >= (10, 0)


def block_size_k(config_block_k: int, block_shape: Optional[tuple[int, int]]) -> int:
    """The BLOCK_SIZE_K the kernel runs: ``invoke_fused_moe_triton_kernel`` lowers it to
    min(BLOCK_SIZE_K, block_n, block_k) under block quantization (256 runs as 128)."""
    if block_shape is None:
        return int(config_block_k)
    return min(int(config_block_k), *block_shape)


def runs_as(config: Mapping[str, int], block_shape: Optional[tuple[int, int]]) -> dict[str, int]:
    """A file entry's six tile parameters as the kernel runs them (BLOCK_SIZE_K clamped)."""
    out = {k: int(config[k]) for k in CONFIG_KEYS}
    out["BLOCK_SIZE_K"] = block_size_k(out["BLOCK_SIZE_K"], block_shape)
    return out


def naive_assignment(num_pairs: int, num_experts: int, *, expert_map: bool = False) -> bool:
    """vLLM's small-M shortcut of one (token, slot) pair per row block, no alignment.

    ``_prepare_expert_assignment`` (fused_moe.py): no expert map and num_tokens * top_k * 4 <=
    global experts, num_pairs being num_tokens * top_k (and weights not host-resident; the
    int4/int8 w*a16 block kernels, never: not kernels of this project).
    """
    return not expert_map and num_pairs * SPARSITY_FACTOR <= num_experts


def grid_rows(padded_rows: int, rows_a: int, top_k: int, block_size_m: int) -> int:
    """Rows (EM) of a launch's grid over aligned routing.

    ``invoke_fused_moe_triton_kernel``: with fewer A rows than BLOCK_SIZE_M at most rows_a * top_k
    row blocks hold pairs, so the grid stops there.
    """
    if rows_a < block_size_m:
        return min(padded_rows, rows_a * top_k * block_size_m)
    return padded_rows


def nearest_key(keys: Iterable[int], M: int) -> int:
    """The file key that serves M tokens: ``try_get_optimal_moe_config`` takes
    ``min(keys, key=|key - M|)`` over the keys in file order, so a tie goes to the key written
    first (the smaller one in an ascending file)."""
    return min(keys, key=lambda key: abs(key - M))


def nearest_entry(entries: Mapping[int, Mapping[str, int]], M: int) -> dict[str, int]:
    """The entry vLLM takes from a file's entries (keys in file order) for M tokens."""
    return dict(entries[nearest_key(entries, M)])


def default_config(M: int, E: int, dtype: str,
                   block_shape: Optional[tuple[int, int]]) -> dict[str, int]:
    """vLLM's ``get_default_config`` (fused_moe.py) on CUDA: what runs without a tuned file."""
    if dtype == "fp8_w8a8" and block_shape is not None:
        # Block fp8: a 64-wide N tile at decode sizes when it divides the quantization block.
        small = M <= 8 and block_shape[0] % 64 == 0
        return {
            "BLOCK_SIZE_M": 16 if M <= 64 else 64,
            "BLOCK_SIZE_N": 64 if small else block_shape[0],
            "BLOCK_SIZE_K": block_shape[1],
            "GROUP_SIZE_M": 1 if M <= 16 else 32,
            "num_warps": 4,
            "num_stages": (4 if M <= 4 else 3) if small else 3,
        }
    # bf16/fp16, fp8 per-tensor and int8_w8a16 (no block).
    if M <= 32:
        block_m = 16
    elif M <= 96:
        block_m = 32
    elif M <= 512:
        block_m = 64
    else:
        block_m = 128
    return {
        "BLOCK_SIZE_M": block_m,
        "BLOCK_SIZE_N": 64 if M <= 64 else 128,
        "BLOCK_SIZE_K": 128 if dtype == "fp8_w8a8" or M <= 64 else 64,
        "GROUP_SIZE_M": 16 if M // max(E, 1) > 128 else 1,
        "num_warps": 4 if M <= 128 else 8,
        "num_stages": 4 if M <= 32 else 3,
    }


# The six keys of a file entry (``get_default_config`` adds SPLIT_K=1, which files do not hold).
CONFIG_KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps",
               "num_stages")
