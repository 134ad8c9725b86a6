"""Activation quantization and silu-and-mul against plain torch, on ragged sizes.

Rows not a multiple of the rows per program and columns not a multiple of the group exercise
both masks; 1 row per program (the old layout) must give bitwise the same result.
"""

import pytest
import torch
import torch.nn.functional as F

from autotune.kernel.quant import (
    FP8_DTYPE,
    FP8_EPS,
    FP8_MAX,
    _launch_rowwise,
    per_token_group_quant_fp8,
    silu_and_mul,
    silu_and_mul_quant_fp8,
)


def torch_group_quant(x: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = x.shape
    groups = -(-cols // group)
    padded = F.pad(x.float(), (0, groups * group - cols)).view(rows, groups, group)
    scale = padded.abs().amax(dim=2).clamp(min=FP8_EPS) / FP8_MAX
    q = (padded / scale[:, :, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q.view(rows, groups * group)[:, :cols], scale


def torch_silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[1] // 2
    gate, up = x[:, :n].float(), x[:, n:].float()
    return gate / (1.0 + torch.exp(-gate)) * up


@pytest.mark.parametrize("rows, cols", [(1, 128), (37, 200), (16, 384)])
def test_group_quant_matches_torch(device, rows, cols):
    x = (torch.randn(rows, cols, generator=torch.Generator().manual_seed(rows)) * 3).to(device)
    x = x.to(torch.float16)
    q, scales = per_token_group_quant_fp8(x, 128)
    want_q, want_scales = torch_group_quant(x, 128)
    assert q.dtype == FP8_DTYPE and scales.shape == (rows, -(-cols // 128))
    torch.testing.assert_close(scales, want_scales.to(device), rtol=1e-6, atol=0)
    # The kernel divides by the scale like torch, so the fp8 values agree up to rare ties.
    mismatched = (q.float() != want_q.float().to(device)).float().mean().item()
    assert mismatched < 1e-3, mismatched


@pytest.mark.parametrize("rows, n", [(5, 72), (40, 256)])
def test_silu_and_mul_and_its_quantized_form(device, rows, n):
    x = torch.randn(rows, 2 * n, generator=torch.Generator().manual_seed(n)).to(device)
    x = x.to(torch.float16)
    want = torch_silu_and_mul(x)  # fp32
    torch.testing.assert_close(silu_and_mul(x).float(), want, rtol=1e-3, atol=1e-3)
    q, scales = silu_and_mul_quant_fp8(x, 128)
    want_q, want_scales = torch_group_quant(want, 128)
    torch.testing.assert_close(scales, want_scales, rtol=1e-5, atol=0)
    assert (q.float() != want_q.float()).float().mean().item() < 1e-2
    groups = scales.repeat_interleave(128, dim=1)[:, :n]
    back = q.float() * groups  # dequantized: within fp8's rounding of the product
    assert (torch.linalg.vector_norm(back - want) / torch.linalg.vector_norm(want)).item() < 0.05


@pytest.mark.parametrize("silu", [False, True])
def test_rows_per_program_does_not_change_results(device, silu):
    x = torch.randn(21, 320, generator=torch.Generator().manual_seed(3)).to(device).half()
    cols = 160 if silu else 320
    one = _launch_rowwise(x, cols, 128, silu=silu, quantize=True, rows_per_program=1)
    many = _launch_rowwise(x, cols, 128, silu=silu, quantize=True)
    assert torch.equal(one[0].view(torch.uint8), many[0].view(torch.uint8))
    assert torch.equal(one[1], many[1])
