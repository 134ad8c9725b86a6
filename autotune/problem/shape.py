"""MoEShape: the per-GPU problem (E, N, K, top-k, dtype, block) that a config file is for.

E and N follow from the model and its parallelism exactly as in vLLM: tensor parallelism slices
every expert (N = I / tp), expert parallelism hands out whole experts (E = experts / ep).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from autotune.config import ShapeConfig
from autotune.errors import UserError
from autotune.problem import vllm_rules

DTYPES = ("bf16", "fp16", "fp8_w8a8", "int8_w8a16")


@dataclass(frozen=True)
class MoEShape:
    E: int  # experts on one GPU
    N: int  # intermediate size on one GPU: w1 is [E, 2N, K], w2 is [E, K, N]
    K: int  # hidden size
    topk: int
    dtype: str
    block_shape: Optional[tuple[int, int]]  # (block_n, block_k) of block-wise quantization
    model: str = ""
    tp: int = 1
    ep: int = 1

    def describe(self) -> str:
        block = f" block=[{self.block_shape[0]},{self.block_shape[1]}]" if self.block_shape else ""
        return f"E={self.E} N={self.N} K={self.K} topk={self.topk} {self.dtype}{block}"

    @classmethod
    def from_config(cls, cfg: ShapeConfig) -> "MoEShape":
        """Derive the per-GPU shape, refusing what vLLM itself would refuse."""
        name = cfg.model or "shape"
        for key in ("experts", "hidden_size", "intermediate_size", "topk", "tp", "ep"):
            if getattr(cfg, key) is None:
                raise UserError(f"shape.{key} is not set for {name}: give it, or read it from the "
                                f"model's config.json with shape=hf shape.model=PATH")
            if getattr(cfg, key) < 1:
                raise UserError(f"shape.{key}={getattr(cfg, key)} for {name}: must be at least 1")
        if cfg.dtype not in DTYPES:
            raise UserError(f"shape.dtype={cfg.dtype}: not supported; "
                            f"use one of {', '.join(DTYPES)}")
        if cfg.topk > cfg.experts:
            raise UserError(
                f"shape.topk={cfg.topk} exceeds shape.experts={cfg.experts}: top-k picks among experts"
            )
        if cfg.experts % cfg.ep:
            raise UserError(
                f"shape.ep={cfg.ep} does not divide the {cfg.experts} experts of {name}; "
                f"use a divisor of {cfg.experts}"
            )
        if cfg.intermediate_size % cfg.tp:
            raise UserError(
                f"shape.tp={cfg.tp} does not divide intermediate_size={cfg.intermediate_size} "
                f"of {name}; use a divisor of {cfg.intermediate_size}"
            )
        E, N, K = cfg.experts // cfg.ep, cfg.intermediate_size // cfg.tp, cfg.hidden_size

        block = _block_shape(cfg, name)
        if block is not None:
            block = _split_block_shape(block, N, K, cfg, name)
            block_n, block_k = block
            if K % block_k:
                raise UserError(
                    f"hidden_size={K} of {name} is not a multiple of the quantization "
                    f"block_k={block_k}"
                )
        return cls(E=E, N=N, K=K, topk=cfg.topk, dtype=cfg.dtype, block_shape=block,
                   model=cfg.model, tp=cfg.tp, ep=cfg.ep)


def _split_block_shape(block: tuple[int, int], N: int, K: int, cfg: ShapeConfig,
                       name: str) -> tuple[int, int]:
    """The quantization block vLLM runs a TP shard with (`vllm_rules.refined_block_shape`; vLLM
    ships files such as E=512,N=320,...,block_shape=[64,64]); refused where vLLM refuses it."""
    refined = vllm_rules.refined_block_shape(block, N, K, cfg.tp)
    if refined is not None:
        return refined
    block_n, block_k = block
    whole = f"block_n={block_n}" if N % block_n else f"block_k={block_k}"
    raise UserError(
        f"N={N} ({name}, intermediate_size {cfg.intermediate_size} / tp {cfg.tp}) is not "
        f"a multiple of the quantization {whole}, and vLLM refines blocks only down to "
        f"{vllm_rules.MIN_REFINED_BLOCK} (gcd here: {math.gcd(block_n, block_k, N, K)}); vLLM "
        f"refuses this split: use a smaller tp, or ep"
    )


def _block_shape(cfg: ShapeConfig, name: str) -> Optional[tuple[int, int]]:
    block = list(cfg.block_shape) if cfg.block_shape is not None else None
    if not block or all(b == 0 for b in block):
        return None
    if len(block) != 2 or any(b <= 0 for b in block):
        raise UserError(
            f"shape.block_shape={block} for {name}: give two positive sizes [block_n, block_k], "
            f"or null for no block quantization"
        )
    if cfg.dtype != "fp8_w8a8":
        raise UserError(
            f"shape.block_shape={block} with shape.dtype={cfg.dtype}: block-wise quantization is "
            f"implemented for fp8_w8a8 only; set shape.block_shape=null"
        )
    return block[0], block[1]
