"""The CPU benchmarker: the real kernel under the Triton interpreter, for `device=cpu`.

Wall-clock time of whole MoE calls on the CPU: it exercises every step of a tuning run on any
machine, and its numbers say nothing about GPU speed (the report labels them so). It runs in the
same restartable worker as the GPU benchmarker, with TRITON_INTERPRET=1 set before Triton loads.
"""

from __future__ import annotations

from autotune.bench.gpu import WorkerBenchmarker, timer_spec
from autotune.bench.timing import make_interpreter_timer
from autotune.bench.worker import MeasuringWorker


def open_interpreter_benchmarker(plan) -> WorkerBenchmarker:
    worker = MeasuringWorker(make_interpreter_timer, timer_spec(plan),
                             env={"TRITON_INTERPRET": "1"},
                             timeout_s=plan.cfg.benchmark.measure_timeout_s * 10)
    return WorkerBenchmarker(worker, plan.benchmark_identity)
