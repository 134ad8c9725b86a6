"""The fused-MoE Triton kernel (vLLM's config semantics), its reference and input builders.

Public API:
- :func:`fused_moe` (the whole MoE call) and :class:`MoEPlan` (the same call split into steps,
  e.g. to time only the two GEMM launches); :func:`moe_gemm` (one GEMM launch);
- :func:`moe_align` / :func:`naive_routing`: grouping (token, slot) pairs by expert;
- :class:`MoECompiler`: compiles a config's kernels without launching them (compile-ahead pools),
  :class:`KernelCompileError` when it cannot;
- :func:`kernel_config` (what the kernel runs for a config), :func:`shared_memory_bytes` (the
  pre-filter estimate) and :data:`KERNEL_VERSION`; which variant vLLM runs (SWAP_AB) is
  :mod:`autotune.problem.vllm_rules`'s to say;
- :func:`make_inputs` / :class:`MoEInputs` / :class:`ExpertWeights`: random inputs;
- :func:`reference_moe`, :func:`reference_align` and :func:`relative_error`: the correctness
  checks.
"""

from .align import (
    AlignedRouting,
    aligned_buffer_length,
    moe_align,
    naive_routing,
    use_naive_assignment,
)
from .compiler import MoECompiler
from .fused_moe import (
    KERNEL_VERSION,
    MoEPlan,
    fused_moe,
    kernel_config,
    moe_gemm,
    shared_memory_bytes,
)
from .inputs import (
    ROUTINGS,
    WEIGHT_DTYPES,
    ExpertWeights,
    MoEInputs,
    make_expert_map,
    make_inputs,
    make_routing,
    make_weights,
)
from .launch import KernelCompileError
from .reference import dequantize_weights, reference_align, reference_moe, relative_error

__all__ = [
    "KERNEL_VERSION",
    "ROUTINGS",
    "WEIGHT_DTYPES",
    "AlignedRouting",
    "ExpertWeights",
    "KernelCompileError",
    "MoECompiler",
    "MoEInputs",
    "MoEPlan",
    "aligned_buffer_length",
    "dequantize_weights",
    "fused_moe",
    "kernel_config",
    "make_expert_map",
    "make_inputs",
    "make_routing",
    "make_weights",
    "moe_align",
    "moe_gemm",
    "naive_routing",
    "reference_align",
    "reference_moe",
    "relative_error",
    "shared_memory_bytes",
    "use_naive_assignment",
]
