"""Benchmarkers: the GPU (CUDA graphs), the CPU interpreter, and recorded tables (replay)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from autotune.bench.protocol import Benchmarker, Measurement

if TYPE_CHECKING:
    from autotune.plan import Plan

__all__ = ["Benchmarker", "Measurement", "open_benchmarker", "start_early"]


def start_early(kind: str, compile_workers: int) -> None:
    """Called before the plan is built, by a run that measures in its own process with `kind`
    (plan.benchmark_kind): start what its benchmarker will need that takes seconds to start, the
    compile pool's server, so that the server's imports overlap the plan's GPU check."""
    if kind == "gpu" and compile_workers != 0:
        from autotune.bench.compile import start_server

        start_server()


def open_benchmarker(plan: "Plan") -> Benchmarker:
    """The benchmarker the plan names (the replay tables are already loaded by the plan)."""
    if plan.benchmark_kind == "replay":
        return plan.replay
    if plan.benchmark_kind == "gpu":
        from autotune.bench.gpu import open_gpu_benchmarker

        return open_gpu_benchmarker(plan)
    from autotune.bench.interpreter import open_interpreter_benchmarker

    return open_interpreter_benchmarker(plan)
