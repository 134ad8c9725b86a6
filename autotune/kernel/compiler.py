"""Compiling a config's kernels ahead of time, without launching anything.

The GPU benchmarker compiles the configs it will measure next in a pool of worker processes while
the GPU times others; Triton's on-disk cache then lets the measuring process load the binaries.
:class:`MoECompiler` runs the MoE call's kernels (:meth:`~.fused_moe.MoEPlan.kernels`) on meta
tensors (shapes, strides and dtypes, no memory) with every launch turned into a compile
(:func:`.launch.compile_only`).
The arguments are built by the same code as a real call's, so the compiled specializations are the
ones the real call asks for: alignment kernels (or none on the small-M path), activation
quantization, both GEMMs (the second with routing weights), SWAP_AB as the config says.

It needs a CUDA driver (Triton asks it for the target and the shared-memory limit) but no GPU
work. Under the Triton interpreter there is nothing to compile: :meth:`MoECompiler.compile` only
validates the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .fused_moe import MoEPlan, kernel_config
from .inputs import MoEInputs, default_act_dtype, make_routing, make_weights
from .launch import compile_only
from .quant import interpreting


class MoECompiler:
    """Compiles every kernel of one MoE call for a config and batch size; see the module doc.

    Args follow :func:`~.inputs.make_inputs` (vLLM naming: E experts, w2's last dim N, hidden K);
    ``act_dtype`` defaults to what ``make_inputs`` uses, as the GPU benchmarker does.
    """

    def __init__(
        self,
        E: int,
        N: int,
        K: int,
        topk: int,
        dtype: str,
        block_shape: tuple[int, int] | None = None,
        *,
        act_dtype: torch.dtype | None = None,
    ):
        self.E, self.N, self.K, self.topk = E, N, K, topk
        self.dtype = dtype
        self.block_shape = tuple(block_shape) if block_shape is not None else None
        self.act_dtype = act_dtype if act_dtype is not None else default_act_dtype(dtype)
        # Built once: meta weights cost nothing but the shapes are M-independent anyway.
        self.weights = make_weights(E, N, K, dtype, block_shape=self.block_shape, device="meta")

    def inputs(self, M: int) -> MoEInputs:
        """Meta-tensor inputs of one call at batch size M, typed like ``make_inputs``'s."""
        topk_ids, topk_weights = make_routing(M, self.E, self.topk, device="meta")
        x = torch.empty(M, self.K, dtype=self.act_dtype, device="meta")
        return MoEInputs(x, topk_ids, topk_weights, self.weights, self.E)

    def compile(self, config: Mapping[str, Any], M: int) -> tuple[str, ...]:
        """Compile (or load from Triton's caches) every kernel the call at M would launch.

        Returns the names of the kernels compiled, in launch order (empty under the interpreter).
        Raises ValueError for an invalid config and :class:`~.launch.KernelCompileError` for one
        that does not compile or exceeds the GPU's shared memory.
        """
        kernel_config(config, self.dtype, self.block_shape)  # ValueError naming the bad key
        if interpreting():
            return ()
        compiled: list[str] = []
        with compile_only(compiled):
            # Not the reduction: a torch op, nothing to compile; on meta tensors its first call
            # imports sympy, 0.5 s of a compile process's first compile (on a 2-core CPU).
            MoEPlan.create(self.inputs(M), config).kernels()
        return tuple(compiled)
