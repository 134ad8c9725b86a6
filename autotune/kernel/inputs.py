"""Inputs of one MoE call and random builders for them, shared by tests and benchmarks.

- :class:`ExpertWeights`: w1 [E, 2N, H], w2 [E, H, N] and their scales for one weight dtype.
- :class:`MoEInputs`: hidden states, routing and the weights; ``with_weights`` swaps in another
  weight copy with the same routing (benchmarks rotate copies to keep weights out of L2).
- :func:`make_inputs` builds everything from sizes; :func:`make_weights`, :func:`make_routing` and
  :func:`make_expert_map` build the parts.

Weight dtypes: "bf16", "fp16" (unquantized), "fp8_w8a8" (fp8 e4m3 weights with per-expert scales,
or [128, 128] block scales with ``block_shape``; activations quantized per call) and "int8_w8a16"
(int8 weights, one scale per output channel, activations in bf16/fp16).

Weights are N(0, 1/fan_in) so every stage's output stays O(1); quantized weights are that, then
quantized, so the reference can use exactly the dequantized values the kernel sees.

Routing: "uniform" is softmax of N(0, 1) logits over the experts, top-k, renormalized (vLLM's
tuner). "skewed" adds -skew * log(rank + 1) to each expert's logit, rank being a random popularity
order: expert popularity then falls off like a power law with exponent ``skew`` (0 = uniform).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .quant import FP8_DTYPE, quantize_weight_fp8, quantize_weight_int8

WEIGHT_DTYPES = ("bf16", "fp16", "fp8_w8a8", "int8_w8a16")
ROUTINGS = ("uniform", "skewed")
_TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_EXPERT_CHUNK = 16  # experts generated at once: bounds fp32 scratch memory for large E


@dataclass
class ExpertWeights:
    """One copy of the expert weights of a MoE layer (local experts only)."""

    w1: torch.Tensor  # [E_local, 2N, H] gate and up stacked: bf16/fp16, fp8 e4m3 or int8
    w2: torch.Tensor  # [E_local, H, N]
    dtype: str  # one of WEIGHT_DTYPES
    w1_scale: torch.Tensor | None = None  # fp32: [E] per-tensor, [E, 2N/128, H/128] block, [E, 2N]
    w2_scale: torch.Tensor | None = None  # fp32: [E] per-tensor, [E, H/128, N/128] block, [E, H]
    block_shape: tuple[int, int] | None = None  # fp8 block quantization (block_n, block_k)

    def clone(self) -> ExpertWeights:
        """A copy in fresh memory (same values): a cold-L2 rotation copy."""
        return dataclasses.replace(
            self,
            w1=self.w1.clone(),
            w2=self.w2.clone(),
            w1_scale=None if self.w1_scale is None else self.w1_scale.clone(),
            w2_scale=None if self.w2_scale is None else self.w2_scale.clone(),
        )

    @property
    def nbytes(self) -> int:
        tensors = (self.w1, self.w2, self.w1_scale, self.w2_scale)
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


@dataclass
class MoEInputs:
    """Everything one MoE call reads."""

    x: torch.Tensor  # [M, H] hidden states, bf16/fp16
    topk_ids: torch.Tensor  # int32 [M, topk] global expert ids
    topk_weights: torch.Tensor  # fp32 [M, topk] routing weights
    weights: ExpertWeights
    num_experts: int  # global number of experts (the id range of topk_ids)
    expert_map: torch.Tensor | None = None  # int32 [num_experts]: local expert id, or -1

    def __post_init__(self) -> None:
        m, h = self.x.shape
        e_local, two_n, h1 = self.weights.w1.shape
        if h1 != h or self.weights.w2.shape != (e_local, h, two_n // 2) or two_n % 2:
            raise ValueError(
                f"shape mismatch: x {tuple(self.x.shape)}, w1 {tuple(self.weights.w1.shape)}, "
                f"w2 {tuple(self.weights.w2.shape)}; expected w1 [E, 2N, H] and w2 [E, H, N]"
            )
        if self.topk_ids.shape != self.topk_weights.shape or self.topk_ids.shape[0] != m:
            raise ValueError(
                f"routing shapes {tuple(self.topk_ids.shape)} / {tuple(self.topk_weights.shape)}"
                f" do not match M={m}"
            )
        if self.expert_map is None and e_local != self.num_experts:
            raise ValueError(
                f"{e_local} local experts but num_experts={self.num_experts}: "
                "pass an expert_map for expert parallelism"
            )
        if self.x.dtype not in _TORCH_DTYPES.values():
            raise ValueError(f"hidden states must be bf16 or fp16, got {self.x.dtype}")

    @property
    def num_tokens(self) -> int:
        return self.x.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.x.shape[1]

    @property
    def intermediate_size(self) -> int:
        return self.weights.w2.shape[2]

    @property
    def topk(self) -> int:
        return self.topk_ids.shape[1]

    @property
    def num_pairs(self) -> int:
        return self.topk_ids.numel()

    @property
    def num_local_experts(self) -> int:
        return self.weights.w1.shape[0]

    def with_weights(self, weights: ExpertWeights) -> MoEInputs:
        """The same hidden states and routing with another weight copy."""
        return dataclasses.replace(self, weights=weights)


def _generator(device: torch.device | str, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _is_meta(device: torch.device | str) -> bool:
    return torch.device(device).type == "meta"


def default_act_dtype(dtype: str) -> torch.dtype:
    """Hidden-state dtype for a weight dtype: the weights' own for bf16/fp16, else bf16."""
    return _TORCH_DTYPES.get(dtype, torch.bfloat16)


def make_weights(
    num_experts: int,
    n: int,
    k: int,
    dtype: str,
    *,
    block_shape: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> ExpertWeights:
    """Random weights w1 [E, 2N, K], w2 [E, K, N] (K = hidden size) of ``dtype``.

    ``block_shape`` applies to fp8_w8a8 only.
    """
    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"unknown weight dtype {dtype!r}; expected one of {WEIGHT_DTYPES}")
    if block_shape is not None and dtype != "fp8_w8a8":
        raise ValueError(f"block_shape is only supported with fp8_w8a8, got dtype {dtype!r}")
    if _is_meta(device):
        return _meta_weights(num_experts, n, k, dtype, block_shape)
    gen = _generator(device, seed)

    def build(rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        qs, scales = [], []
        for start in range(0, num_experts, _EXPERT_CHUNK):
            count = min(_EXPERT_CHUNK, num_experts - start)
            w = torch.randn(count, rows, cols, generator=gen, device=device) * cols**-0.5
            if dtype in _TORCH_DTYPES:
                qs.append(w.to(_TORCH_DTYPES[dtype]))
                continue
            q, s = (
                quantize_weight_fp8(w, block_shape)
                if dtype == "fp8_w8a8"
                else (quantize_weight_int8(w))
            )
            qs.append(q)
            scales.append(s)
        return torch.cat(qs), torch.cat(scales) if scales else None

    w1, w1_scale = build(2 * n, k)
    w2, w2_scale = build(k, n)
    return ExpertWeights(
        w1=w1,
        w2=w2,
        dtype=dtype,
        w1_scale=w1_scale,
        w2_scale=w2_scale,
        block_shape=tuple(block_shape) if block_shape is not None else None,
    )


def _meta_weights(num_experts: int, n: int, k: int, dtype: str,
                  block_shape: tuple[int, int] | None) -> ExpertWeights:
    """make_weights' shapes and dtypes on the meta device (compile-only inputs), made without an
    op there: the first one imports torch._dynamo, 1-4 s in each of the compile pool's processes.
    Scales as quant.py makes them: fp8 [E] or [E, cdiv(rows, bn), cdiv(cols, bk)], int8 [E, rows].
    """
    quantized = {"fp8_w8a8": FP8_DTYPE, "int8_w8a16": torch.int8}

    def build(rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = torch.empty(num_experts, rows, cols, device="meta",
                        dtype=_TORCH_DTYPES.get(dtype) or quantized[dtype])
        if dtype in _TORCH_DTYPES:
            return w, None
        if dtype == "int8_w8a16":
            scale = (num_experts, rows)
        elif block_shape is None:
            scale = (num_experts,)
        else:
            bn, bk = block_shape
            scale = (num_experts, -(-rows // bn), -(-cols // bk))
        return w, torch.empty(scale, dtype=torch.float32, device="meta")

    w1, w1_scale = build(2 * n, k)
    w2, w2_scale = build(k, n)
    return ExpertWeights(w1=w1, w2=w2, dtype=dtype, w1_scale=w1_scale, w2_scale=w2_scale,
                         block_shape=tuple(block_shape) if block_shape is not None else None)


def make_routing(
    num_tokens: int,
    num_experts: int,
    topk: int,
    *,
    routing: str = "uniform",
    skew: float = 1.0,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random top-k routing: (int32 ids [M, topk], fp32 renormalized weights [M, topk])."""
    if routing not in ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}; expected one of {ROUTINGS}")
    if not 1 <= topk <= num_experts:
        raise ValueError(f"topk must be in [1, {num_experts}], got {topk}")
    if _is_meta(device):  # no op on the meta device (see _meta_weights)
        return (torch.empty(num_tokens, topk, dtype=torch.int32, device=device),
                torch.empty(num_tokens, topk, dtype=torch.float32, device=device))
    gen = _generator(device, seed)
    logits = torch.randn(num_tokens, num_experts, generator=gen, device=device)
    if routing == "skewed":
        rank = torch.randperm(num_experts, generator=gen, device=device).float()
        logits = logits - skew * torch.log1p(rank)
    probs = torch.softmax(logits, dim=-1)
    weights, ids = torch.topk(probs, topk, dim=-1)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return ids.to(torch.int32), weights.float()


def make_expert_map(
    num_experts: int, num_local: int, *, rank: int = 0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """vLLM-style expert map for expert parallelism with experts placed in contiguous chunks.

    GPU ``rank`` holds global experts [rank * num_local, (rank + 1) * num_local) as local experts
    0..num_local-1; every other expert maps to -1.
    """
    if not 0 < num_local <= num_experts or not 0 <= rank * num_local < num_experts:
        raise ValueError(
            f"cannot place {num_local} local experts at rank {rank} among {num_experts}"
        )
    expert_map = torch.full((num_experts,), -1, dtype=torch.int32, device=device)
    start = rank * num_local
    stop = min(start + num_local, num_experts)
    expert_map[start:stop] = torch.arange(stop - start, dtype=torch.int32, device=device)
    return expert_map


def make_inputs(
    E: int,
    N: int,
    K: int,
    topk: int,
    M: int,
    dtype: str,
    block_shape: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
    *,
    routing: str = "uniform",
    skew: float = 1.0,
    ep_experts: int | None = None,
    ep_rank: int = 0,
    act_dtype: torch.dtype | None = None,
    seed: int = 0,
    weights: ExpertWeights | None = None,
) -> MoEInputs:
    """Random inputs of one MoE call in vLLM's naming: E experts, w2's last dim N, hidden K.

    Args:
        dtype: weight dtype, one of WEIGHT_DTYPES.
        block_shape: fp8_w8a8 block quantization, e.g. (128, 128); None = per-tensor.
        routing, skew: see the module docstring.
        ep_experts: expert parallelism: this GPU holds ``ep_experts`` of the E experts (chunk
            ``ep_rank``); pairs routed elsewhere contribute zeros.
        act_dtype: hidden-state dtype; bf16 by default, the weight dtype for bf16/fp16.
        seed: every tensor is drawn from generators seeded from it.
        weights: the weights `make_inputs` made for this seed before (they do not depend on M),
            used instead of drawing them again.
    """
    if act_dtype is None:
        act_dtype = default_act_dtype(dtype)
    elif dtype in _TORCH_DTYPES and act_dtype != _TORCH_DTYPES[dtype]:
        raise ValueError(f"act_dtype {act_dtype} does not match unquantized weights {dtype}")
    num_local = E if ep_experts is None else ep_experts
    if weights is None:
        weights = make_weights(
            num_local, N, K, dtype, block_shape=block_shape, device=device, seed=seed + 1
        )
    topk_ids, topk_weights = make_routing(
        M, E, topk, routing=routing, skew=skew, device=device, seed=seed + 2
    )
    x = torch.randn(M, K, generator=_generator(device, seed + 3), device=device).to(act_dtype)
    expert_map = (
        None if ep_experts is None else make_expert_map(E, ep_experts, rank=ep_rank, device=device)
    )
    return MoEInputs(
        x=x,
        topk_ids=topk_ids,
        topk_weights=topk_weights,
        weights=weights,
        num_experts=E,
        expert_map=expert_map,
    )
