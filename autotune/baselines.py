"""What vLLM runs without our file: its default config heuristic (vLLM 0.33.0, CUDA).

Used as the first (warm-start) trial of a bucket and as the baseline every tuned entry is
compared with.
"""

from __future__ import annotations

from typing import Optional

from autotune.space import Config


def vllm_default_config(M: int, E: int, dtype: str,
                        block_shape: Optional[tuple[int, int]]) -> Config:
    """vLLM's `get_default_config` for M tokens (fp8 block-wise, or the unquantized/other path)."""
    if dtype == "fp8_w8a8" and block_shape is not None:
        return {
            "BLOCK_SIZE_M": 16 if M <= 64 else 64,
            "BLOCK_SIZE_N": 64 if M <= 8 else 128,
            "BLOCK_SIZE_K": 128,
            "GROUP_SIZE_M": 1 if M <= 16 else 32,
            "num_warps": 4,
            "num_stages": 4 if M <= 4 else 3,
        }
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
        "BLOCK_SIZE_K": 128 if M <= 64 else 64,
        "GROUP_SIZE_M": 16 if M // E > 128 else 1,
        "num_warps": 4 if M <= 128 else 8,
        "num_stages": 4 if M <= 32 else 3,
    }


def nearest_entry(entries: dict[int, Config], M: int) -> Config:
    """The entry vLLM picks for M tokens: the nearest key, the smaller one on a tie."""
    key = min(entries, key=lambda k: (abs(k - M), k))
    return entries[key]
