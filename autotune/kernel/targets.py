"""Compiling the MoE GEMMs for a GPU architecture that is not here, and reading what they use.

Triton compiles for any NVIDIA target on a machine without a GPU: the whole MoE call runs on meta
tensors with its launches intercepted (:mod:`.launch`), and each GEMM launch is specialized as
Triton's own launcher would (the binder of ``JITFunction``: pointer alignment, integers == 1 and
% 16, constexprs) and compiled with ``triton.compile(..., target=GPUTarget("cuda", arch, 32))``.
The binary's metadata gives the shared memory Triton allocates (what the launch checks against the
GPU's opt-in limit); ``cuobjdump -res-usage`` on the cubin gives registers and local memory per
thread (spills land there). Both GEMMs are compiled: GEMM1 (x @ w1) and GEMM2 (with routing
weights). Alignment and quantization kernels do not depend on the tile config's resources and are
skipped.

The binder and ``_pack_args`` are Triton internals (present in 3.5 to 3.9); each table records the
Triton version it came from.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .launch import KernelCompileError, intercept_launches, kernel_name

GEMM_KERNEL = "_moe_gemm_kernel"
# Batch size of the compiled call: large enough for the aligned (not the small-M naive) path.
COMPILE_M = 256


@dataclass(frozen=True)
class KernelResources:
    """What one compiled GEMM needs per program (block of threads)."""

    shared: int  # bytes of shared memory Triton allocates (checked at launch)
    registers: int  # per thread
    local: int  # bytes of local memory per thread: register spills and stack

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _cuobjdump() -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def _registers_and_local(cubin: bytes) -> tuple[int, int]:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([_cuobjdump(), "-res-usage", f.name], capture_output=True, text=True,
                             check=True).stdout
    match = re.search(r"REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)", out)
    if match is None:
        raise RuntimeError(f"cuobjdump printed no resource usage: {out[-200:]!r}")
    reg, stack, local = (int(g) for g in match.groups())
    return reg, stack + local


def _compile_launch(kernel: Any, args: tuple, kwargs: dict, target: Any) -> KernelResources:
    import triton
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    # Triton 3.9 warns when this is unset; 1 is its (and vLLM's) default either way.
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(
        backend, kwargs, bound, specialization, options)
    try:
        binary = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target,
                                options=options.__dict__)
    except Exception as exc:  # noqa: BLE001 - any compiler failure means: does not compile
        last = [line for line in str(exc).strip().splitlines() if line.strip()][-1:] or [""]
        raise KernelCompileError(f"does not compile: {type(exc).__name__}: {last[0][:300]}") \
            from exc
    registers, local = _registers_and_local(binary.asm["cubin"])
    return KernelResources(shared=int(binary.metadata.shared), registers=registers, local=local)


def compile_gemms(config: Mapping[str, Any], *, dtype: str, block_shape: tuple[int, int] | None,
                  capability: tuple[int, int], E: int = 256, N: int = 512, K: int = 2048,
                  topk: int = 8) -> tuple[KernelResources, KernelResources]:
    """(GEMM1, GEMM2) resources of ``config`` compiled for ``capability`` (e.g. (12, 0)).

    The layer (E, N, K, topk) only matters through Triton's integer specializations; the default
    is a typical one whose sizes are all multiples of 16. Raises :class:`KernelCompileError` when
    a GEMM does not compile for that target.
    """
    from triton.backends.compiler import GPUTarget

    from .compiler import MoECompiler
    from .fused_moe import MoEPlan

    target = GPUTarget("cuda", capability[0] * 10 + capability[1], 32)
    compiler = MoECompiler(E, N, K, topk, dtype, block_shape)
    gemms: list[KernelResources] = []

    def handler(kernel: Any, grid: tuple, args: tuple, kwargs: dict) -> None:
        if kernel_name(kernel) == GEMM_KERNEL:
            gemms.append(_compile_launch(kernel, args, kwargs, target))

    with intercept_launches(handler):
        MoEPlan.create(compiler.inputs(COMPILE_M), dict(config))()
    if len(gemms) != 2:
        raise RuntimeError(f"expected 2 GEMM launches, compiled {len(gemms)}")
    return gemms[0], gemms[1]
