"""Compile-only path: MoECompiler compiles what the real call launches, and launches nothing.

On the CPU (interpreter) ``compile`` only validates, and the launches it would compile are
compared with those of a real call, argument by argument (dtypes, shapes, strides, alignment,
integers, constexprs, grid). On a GPU the real call after ``compile`` must find every kernel in
Triton's cache: nothing compiles again.
"""

import subprocess
import sys

import pytest
import torch

from autotune.kernel import (
    KernelCompileError,
    MoECompiler,
    MoEPlan,
    make_inputs,
)
from autotune.kernel.launch import intercept_launches, kernel_name
from autotune.kernel.quant import interpreting
from autotune.problem import vllm_rules

BLOCK = (128, 128)


def config(bm, bn, bk, group=1, warps=4, stages=3, swap=None):
    cfg = dict(BLOCK_SIZE_M=bm, BLOCK_SIZE_N=bn, BLOCK_SIZE_K=bk, GROUP_SIZE_M=group,
               num_warps=warps, num_stages=stages)  # fmt: skip
    if swap is not None:
        cfg["SWAP_AB"] = swap
    return cfg


def describe(value):
    """What a launch argument means to Triton's specialization (and a bit more: exact values)."""
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dtype, tuple(value.shape), value.stride(), value.data_ptr() % 16 == 0)
    if isinstance(value, (bool, int, float)) or value is None:
        return (type(value).__name__, value)
    return ("other", str(value))


def recorded_launches(inputs, cfg):
    """Every launch of one whole call, described, without running any kernel."""
    launches = []

    def record(kernel, grid, args, kwargs):
        launches.append((kernel_name(kernel), tuple(grid), [describe(a) for a in args],
                         {k: describe(v) for k, v in sorted(kwargs.items())}))  # fmt: skip

    with intercept_launches(record):
        MoEPlan.create(inputs, cfg)()
    return launches


SHAPES = {  # E, N, K, topk, dtype, block_shape
    "fp8-block": (64, 256, 512, 8, "fp8_w8a8", BLOCK),
    "fp8-tensor": (32, 96, 200, 4, "fp8_w8a8", None),
    "bf16": (32, 96, 200, 2, "bf16", None),
    "int8": (16, 96, 200, 2, "int8_w8a16", None),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(
    "M, cfg",
    [
        (1, config(16, 64, 128, swap=True)),  # naive small-M path for E >= 32
        (3, config(16, 32, 64)),
        (40, config(64, 128, 128, group=8, stages=4, swap=False)),
        (40, config(16, 64, 256, swap=True)),
    ],
    ids=["m1-swap", "m3", "m40", "m40-swap"],
)
def test_compile_inputs_launch_exactly_what_the_real_call_launches(shape, M, cfg):
    E, N, K, topk, dtype, block_shape = SHAPES[shape]
    real = make_inputs(E, N, K, topk, M, dtype, block_shape, "cpu", seed=M)
    compiler = MoECompiler(E, N, K, topk, dtype, block_shape)
    want = recorded_launches(real, cfg)
    got = recorded_launches(compiler.inputs(M), cfg)
    assert got == want
    names = [launch[0] for launch in got]
    assert names.count("_moe_gemm_kernel") == 2
    gemm_swaps = [launch[3]["SWAP_AB"] for launch in got if launch[0] == "_moe_gemm_kernel"]
    assert gemm_swaps == [("bool", bool(cfg.get("SWAP_AB", False)))] * 2
    naive = M * topk * 4 <= E
    assert ("_align_scatter_kernel" in names) == (not naive)


def test_compile_inputs_are_made_without_an_op_on_the_meta_device():
    # The first op there imports torch._dynamo: 1-4 s in each compile process before its first
    # compile (an H100 host, 14 processes: benchmarks/speed/h100/session11/pool_profile.log).
    code = ("import sys\n"
            "from autotune.kernel import MoECompiler\n"
            f"for E, N, K, topk, dtype, block in {list(SHAPES.values())}:\n"
            "    MoECompiler(E, N, K, topk, dtype, block).inputs(40)\n"
            "assert 'torch._dynamo' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.skipif(not interpreting(), reason="under the interpreter only")
def test_compile_is_a_no_op_under_the_interpreter():
    compiler = MoECompiler(64, 256, 512, 8, "fp8_w8a8", BLOCK)
    seen = []
    with intercept_launches(lambda *launch: seen.append(launch)):
        assert compiler.compile(config(16, 64, 128, swap=True), 64) == ()
    assert seen == []  # not even a launch was attempted


def test_invalid_config_raises_before_compiling():
    compiler = MoECompiler(64, 256, 512, 8, "fp8_w8a8", BLOCK)
    with pytest.raises(ValueError, match="BLOCK_SIZE_N must be a power of two"):
        compiler.compile(config(16, 48, 128), 64)


# -- GPU: the real call after compile finds everything compiled --------------------------------

QWEN = (256, 512, 2048, 8, "fp8_w8a8", BLOCK)  # Qwen3.5-35B-A3B-FP8 at TP1


def compiled_variants() -> int:
    """Binaries in the in-memory caches of this package's kernels (Triton 3.4 to 3.9)."""
    from autotune.kernel.align import _align_count_kernel, _align_scatter_kernel
    from autotune.kernel.fused_moe import _moe_gemm_kernel
    from autotune.kernel.quant import _rowwise_activation_kernel

    kernels = (_moe_gemm_kernel, _rowwise_activation_kernel, _align_count_kernel,
               _align_scatter_kernel)  # fmt: skip
    return sum(len(caches[0]) for k in kernels for caches in k.device_caches.values())


@pytest.mark.gpu
@pytest.mark.parametrize(
    "shape, M, cfg",
    [
        (QWEN, 1, config(16, 64, 128, swap=True)),
        (QWEN, 16, config(16, 128, 128, stages=4, swap=True)),
        (QWEN, 64, config(16, 64, 128, group=16, swap=False)),
        (QWEN, 4096, config(64, 128, 128, group=32, stages=4)),
        ((64, 1536, 3072, 8, "bf16", None), 48, config(16, 128, 64, swap=True)),
    ],
    ids=["qwen-m1-swap", "qwen-m16-swap", "qwen-m64", "qwen-m4096", "bf16-m48-swap"],
)
def test_real_call_after_compile_compiles_nothing(device, shape, M, cfg):
    E, N, K, topk, dtype, block_shape = shape
    compiler = MoECompiler(E, N, K, topk, dtype, block_shape)
    names = compiler.compile(cfg, M)
    assert names.count("_moe_gemm_kernel") == 2
    before = compiled_variants()
    assert before > 0
    inputs = make_inputs(E, N, K, topk, M, dtype, block_shape, device, seed=M)
    MoEPlan.create(inputs, cfg)()
    torch.cuda.synchronize()
    assert compiled_variants() == before, "the real call compiled a kernel compile() did not"


@pytest.mark.gpu
def test_swap_ab_variant_is_the_one_compiled(device):
    cfg = config(32, 128, 128, stages=4)
    cfg["SWAP_AB"] = vllm_rules.swap_ab(cfg, "fp8_w8a8", (9, 0))  # as vLLM runs it on Hopper
    compiler = MoECompiler(*QWEN)
    compiler.compile(cfg, 128)
    before = compiled_variants()
    MoEPlan.create(make_inputs(*QWEN[:4], 128, *QWEN[4:], device, seed=1), cfg)()
    torch.cuda.synchronize()
    assert compiled_variants() == before


@pytest.mark.gpu
def test_config_over_shared_memory_is_a_compile_error(device):
    # 5 stages x (256x128 + 128x256) fp8 bytes = 327680 > any GPU's shared memory per block.
    compiler = MoECompiler(*QWEN)
    with pytest.raises(KernelCompileError, match="shared memory|out of resource"):
        compiler.compile(config(256, 256, 128, warps=8, stages=5), 4096)
