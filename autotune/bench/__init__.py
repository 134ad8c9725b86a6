"""Benchmarkers: the GPU (CUDA graphs), the CPU interpreter, and recorded tables (replay)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from autotune.bench.protocol import Benchmarker, Measurement

if TYPE_CHECKING:
    from autotune.config import BenchmarkConfig
    from autotune.plan import Plan

__all__ = ["Benchmarker", "Measurement", "open_benchmarker", "start_early"]


def start_early(kind: str, settings: "BenchmarkConfig") -> None:
    """Called before the plan is built, by a run that measures in its own process with `kind`
    (plan.benchmark_kind): start the server its compile pool and measuring worker are forked from
    (bench/server.py), so that the server's imports overlap the plan's GPU check."""
    if kind == "gpu" and (settings.compile_workers != 0 or settings.worker_from_server):
        from autotune.bench.server import start_server

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
