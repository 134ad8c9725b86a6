"""Benchmarkers: the GPU (CUDA graphs), the CPU interpreter, and recorded tables (replay)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from autotune.bench.protocol import Benchmarker, Measurement

if TYPE_CHECKING:
    from autotune.plan import Plan

__all__ = ["Benchmarker", "Measurement", "open_benchmarker"]


def open_benchmarker(plan: "Plan") -> Benchmarker:
    """The benchmarker the plan names (the replay tables are already loaded by the plan)."""
    if plan.benchmark_kind == "replay":
        return plan.replay
    if plan.benchmark_kind == "gpu":
        from autotune.bench.gpu import open_gpu_benchmarker

        return open_gpu_benchmarker(plan)
    from autotune.bench.interpreter import open_interpreter_benchmarker

    return open_interpreter_benchmarker(plan)
