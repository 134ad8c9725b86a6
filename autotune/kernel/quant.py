"""Quantization around the MoE GEMMs: activations on every call, weights once when inputs are made.

Activations (per call, on the GPU):
- :func:`per_token_group_quant_fp8`: fp8 block mode; for every row and every group of 128 columns,
  scale = max(amax, eps) / 448 and values = x / scale cast to float8_e4m3fn; scales fp32
  [rows, cdiv(cols, 128)] (vLLM's ``per_token_group_quant_fp8``).
- :func:`silu_and_mul` / :func:`silu_and_mul_quant_fp8`: the activation between the two GEMMs,
  silu(x[:, :N]) * x[:, N:] computed in fp32, stored in the activation dtype or straight to fp8 per
  128-group. One Triton kernel serves all three, so each is one launch; each program handles
  16 rows of one group.
- :func:`per_tensor_quant_fp8`: fp8 per-tensor mode, one dynamic scale for the whole tensor.

Weights (once, by the input builders): :func:`quantize_weight_fp8` (per-tensor or [128, 128]
blocks) and :func:`quantize_weight_int8` (per output channel, symmetric).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .launch import launch

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite float8_e4m3fn
FP8_EPS = 1e-10  # floor on amax: an all-zero group gets a tiny scale, not a division by zero
INT8_MAX = 127.0


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    knobs = getattr(triton, "knobs", None)  # Triton >= 3.4 parses the variable here
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


@triton.jit
def _round_to_e4m3_grid(v):
    # Round fp32 v (|v| <= 448) to the nearest float8_e4m3fn value, ties to even, in fp32
    # arithmetic. Only used under the interpreter, whose fp32 -> fp8 cast drops the carry when
    # rounding overflows the mantissa (127.9 becomes 64 instead of 128); on the GPU the cast
    # itself rounds correctly.
    a = tl.abs(v)
    exponent = ((a.to(tl.int32, bitcast=True) >> 23) & 0xFF) - 127
    step = tl.exp2((tl.maximum(exponent, -6) - 3).to(tl.float32))  # 3 mantissa bits
    q = a / step
    r = tl.floor(q)
    odd = (r - 2.0 * tl.floor(r * 0.5)) == 1.0
    r = tl.where((q - r > 0.5) | ((q - r == 0.5) & odd), r + 1.0, r)
    return tl.where(v < 0, -r * step, r * step)


@triton.jit(do_not_specialize=["rows"])
def _rowwise_activation_kernel(
    x_ptr,  # [rows, cols] (quantize) or [rows, 2 * cols] (silu-and-mul), bf16/fp16
    out_ptr,  # [rows, cols]: float8_e4m3fn when QUANTIZE, else x's dtype
    scale_ptr,  # fp32 [rows, cdiv(cols, GROUP)] when QUANTIZE; unused otherwise
    rows,
    cols,
    stride_xm,
    stride_om,
    stride_sm,
    GROUP: tl.constexpr,
    ROWS: tl.constexpr,
    SILU_AND_MUL: tl.constexpr,
    QUANTIZE: tl.constexpr,
    FP8_MAX_VALUE: tl.constexpr,
    EPS: tl.constexpr,
    ROUND_BEFORE_CAST: tl.constexpr,
):
    # One program per (ROWS rows, group of GROUP output columns); the group of one row is the
    # quantization unit. Several rows per program: one 128-element group alone is too little
    # work for a program (thousands of them dominated the call's overhead).
    row = (tl.program_id(0) * ROWS + tl.arange(0, ROWS)).to(tl.int64)
    group = tl.program_id(1)
    offs = group * GROUP + tl.arange(0, GROUP)
    row_mask = row < rows
    mask = row_mask[:, None] & (offs[None, :] < cols)
    x_ptrs = x_ptr + row[:, None] * stride_xm + offs[None, :]
    x = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
    if SILU_AND_MUL:
        up = tl.load(x_ptrs + cols, mask=mask, other=0.0).to(tl.float32)
        x = x / (1.0 + tl.exp(-x)) * up
    out_ptrs = out_ptr + row[:, None] * stride_om + offs[None, :]
    if QUANTIZE:
        scale = tl.maximum(tl.max(tl.abs(x), axis=1), EPS) / FP8_MAX_VALUE
        q = tl.minimum(tl.maximum(x / scale[:, None], -FP8_MAX_VALUE), FP8_MAX_VALUE)
        if ROUND_BEFORE_CAST:
            q = _round_to_e4m3_grid(q)
        tl.store(out_ptrs, q.to(out_ptr.dtype.element_ty), mask=mask)
        tl.store(scale_ptr + row * stride_sm + group, scale, mask=row_mask)
    else:
        tl.store(out_ptrs, x.to(out_ptr.dtype.element_ty), mask=mask)


ROWS_PER_PROGRAM = 16  # x 128 columns: 2048 elements per program


def _launch_rowwise(
    x: torch.Tensor,
    cols: int,
    group_size: int,
    silu: bool,
    quantize: bool,
    rows_per_program: int = ROWS_PER_PROGRAM,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if x.dim() != 2 or x.stride(-1) != 1:
        raise ValueError(f"expected a 2-D row-major tensor, got shape {tuple(x.shape)}")
    if group_size & (group_size - 1):
        raise ValueError(f"group_size must be a power of two, got {group_size}")
    rows = x.shape[0]
    groups = triton.cdiv(cols, group_size)
    out = torch.empty(rows, cols, dtype=FP8_DTYPE if quantize else x.dtype, device=x.device)
    scales = torch.empty(rows, groups, dtype=torch.float32, device=x.device) if quantize else None
    if rows > 0 and cols > 0:
        launch(
            _rowwise_activation_kernel,
            (triton.cdiv(rows, rows_per_program), groups),
            x,
            out,
            scales,
            rows,
            cols,
            x.stride(0),
            out.stride(0),
            scales.stride(0) if quantize else 0,
            GROUP=group_size,
            ROWS=rows_per_program,
            SILU_AND_MUL=silu,
            QUANTIZE=quantize,
            FP8_MAX_VALUE=FP8_MAX,
            EPS=FP8_EPS,
            ROUND_BEFORE_CAST=interpreting(),
        )
    return out, scales


def per_token_group_quant_fp8(
    x: torch.Tensor, group_size: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize x [rows, cols] to fp8 per row and per ``group_size`` columns.

    Returns (float8_e4m3fn [rows, cols], fp32 scales [rows, cdiv(cols, group_size)]).
    """
    q, scales = _launch_rowwise(x, x.shape[1], group_size, silu=False, quantize=True)
    return q, scales


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """silu(x[:, :N]) * x[:, N:] for x [rows, 2N], computed in fp32, returned in x's dtype."""
    out, _ = _launch_rowwise(x, x.shape[1] // 2, 128, silu=True, quantize=False)
    return out


def silu_and_mul_quant_fp8(
    x: torch.Tensor, group_size: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`silu_and_mul` then :func:`per_token_group_quant_fp8`, in one pass."""
    q, scales = _launch_rowwise(x, x.shape[1] // 2, group_size, silu=True, quantize=True)
    return q, scales


def per_tensor_quant_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize x to fp8 with one dynamic scale; returns (fp8 like x, fp32 scale [1])."""
    scale = (x.abs().amax().float().clamp(min=FP8_EPS) / FP8_MAX).reshape(1)
    q = (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale


def quantize_weight_fp8(
    w: torch.Tensor, block_shape: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize expert weights w [E, rows, cols] (float) to fp8.

    With ``block_shape`` (bn, bk): one scale per [bn, bk] block, fp32 [E, cdiv(rows, bn),
    cdiv(cols, bk)]; without: one scale per expert, fp32 [E].
    """
    w = w.float()
    experts, rows, cols = w.shape
    if block_shape is None:
        scale = w.abs().amax(dim=(1, 2)).clamp(min=FP8_EPS) / FP8_MAX
        q = (w / scale[:, None, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
        return q, scale
    bn, bk = block_shape
    nb_rows, nb_cols = triton.cdiv(rows, bn), triton.cdiv(cols, bk)
    padded = torch.zeros(experts, nb_rows * bn, nb_cols * bk, dtype=w.dtype, device=w.device)
    padded[:, :rows, :cols] = w
    blocks = padded.view(experts, nb_rows, bn, nb_cols, bk)
    scale = blocks.abs().amax(dim=(2, 4)).clamp(min=FP8_EPS) / FP8_MAX
    q = (blocks / scale[:, :, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    q = q.view(experts, nb_rows * bn, nb_cols * bk)[:, :rows, :cols].contiguous()
    return q, scale


def quantize_weight_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize expert weights w [E, rows, cols] to int8 with one scale per row (output channel).

    Returns (int8 [E, rows, cols], fp32 scales [E, rows]).
    """
    w = w.float()
    scale = w.abs().amax(dim=2).clamp(min=FP8_EPS) / INT8_MAX
    q = torch.round(w / scale[:, :, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale
