"""A GPU timer whose kernel faults on purpose for one config: what the fault-containment test and
campaign (benchmarks/benchmarker/campaign.py) inject into the GPU benchmarker in place of the real
timer, so no test switch lives in the timing code.

    bench = open_gpu_benchmarker(plan, timer=faulting_timer({"BLOCK_SIZE_M": 32}))
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping

from autotune.bench.timing import GpuTimer, TimerSpec


class FaultingGpuTimer(GpuTimer):
    """The real GPU timer, but a config matching `fault` reads an illegal address in GEMM1."""

    def __init__(self, spec: TimerSpec, fault: Mapping[str, int]):
        super().__init__(spec)
        self.fault = dict(fault)

    def moe_plan(self, config: dict, inputs):
        plan = super().moe_plan(config, inputs)
        if all(config.get(k) == v for k, v in self.fault.items()):
            _plant_fault(plan)
        return plan


def faulting_timer(fault: Mapping[str, int]) -> Callable[[TimerSpec], FaultingGpuTimer]:
    """A picklable timer factory for the measuring worker (it runs in a spawned process)."""
    return functools.partial(_make, fault=dict(fault))


def _make(spec: TimerSpec, fault: dict) -> FaultingGpuTimer:
    return FaultingGpuTimer(spec, fault)


def _plant_fault(plan) -> None:
    """Point every row block at a far-away expert, so GEMM1 reads an illegal address."""
    import torch

    align = plan.align

    def faulty_align():
        routing = align()
        bad = torch.full_like(routing.expert_ids, 2**30)
        plan.routing = dataclasses.replace(routing, expert_ids=bad)
        return plan.routing

    plan.align = faulty_align
