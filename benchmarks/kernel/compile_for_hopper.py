"""Compile every kernel of the MoE call for Hopper (sm_90) down to cubin, on a machine without a GPU.

Whether a config compiles with a given Triton, checked where no GPU is lent: the real call runs on
meta tensors with its launches intercepted (autotune.kernel.launch), and each launch goes to
triton.compile for GPUTarget("cuda", 90, 32) with the same argument types and constexprs.
Integers are compiled unspecialized (Triton's ==1 and %16 specializations are not reproduced), so
this says "compiles", not "the binary a GPU run would cache". Default: DeepSeek-V3 TP8 (E=256
N=256 K=7168 top-8, fp8 block) with the BLOCK_SIZE_M=8 entries of vLLM's shipped H200 file.

    PYTHONPATH=. python benchmarks/kernel/compile_for_hopper.py
"""

import os
from functools import partial

os.environ["TRITON_INTERPRET"] = "0"  # before triton is imported

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from autotune.kernel.compiler import MoECompiler  # noqa: E402
from autotune.kernel.fused_moe import MoEPlan  # noqa: E402
from autotune.kernel.launch import intercept_launches, kernel_name  # noqa: E402

HOPPER = GPUTarget("cuda", 90, 32)
TRITON_TYPES = {torch.float8_e4m3fn: "fp8e4nv", torch.float16: "fp16", torch.bfloat16: "bf16",
                torch.float32: "fp32", torch.int32: "i32", torch.int64: "i64", torch.int8: "i8"}
LAUNCH_OPTIONS = ("num_warps", "num_stages")


def argument_type(value) -> str:
    if isinstance(value, torch.Tensor):
        return "*" + TRITON_TYPES[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if abs(value) < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton type for {type(value).__name__}")


def compile_launch(kernel, grid, args, kwargs, *, compiled: list) -> None:
    values = dict(zip([p.name for p in kernel.params], args))
    values.update({k: v for k, v in kwargs.items() if k not in LAUNCH_OPTIONS})
    signature, constexprs = {}, {}
    for p in kernel.params:
        value = values.get(p.name, getattr(p, "default", None))
        if p.is_constexpr or value is None:
            signature[p.name], constexprs[p.name] = "constexpr", value
        else:
            signature[p.name] = argument_type(value)
    try:
        source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
    except TypeError:  # Triton before 3.5 calls them constants
        source = ASTSource(fn=kernel, signature=signature, constants=constexprs)
    options = {k: kwargs[k] for k in LAUNCH_OPTIONS if k in kwargs}
    binary = triton.compile(source, target=HOPPER, options=options)
    compiled.append(f"{kernel_name(kernel)} (shared {binary.metadata.shared} B)")


def config(bm, bn, stages, swap=False):
    return dict(BLOCK_SIZE_M=bm, BLOCK_SIZE_N=bn, BLOCK_SIZE_K=128, GROUP_SIZE_M=1, num_warps=4,
                num_stages=stages, SWAP_AB=swap)


def main() -> None:
    compiler = MoECompiler(256, 256, 7168, 8, "fp8_w8a8", (128, 128))
    print(f"Triton {triton.__version__}, target {HOPPER}")
    for cfg in (config(8, 32, 4), config(8, 64, 4, swap=True), config(16, 64, 5, swap=True)):
        for M in (1, 4):
            compiled: list[str] = []
            name = (f"BLOCK_SIZE_M={cfg['BLOCK_SIZE_M']} N={cfg['BLOCK_SIZE_N']} "
                    f"swap={cfg['SWAP_AB']} M={M}")
            try:
                with intercept_launches(partial(compile_launch, compiled=compiled)):
                    MoEPlan.create(compiler.inputs(M), cfg)()
                print(f"{name}: compiled {', '.join(compiled)}")
            except Exception as exc:  # noqa: BLE001 - report any compiler failure and go on
                print(f"{name}: FAILED {type(exc).__name__}: {str(exc).strip()[-300:]}")


if __name__ == "__main__":
    main()
