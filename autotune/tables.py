"""Recording `moe-grid-table/1` tables: every config of the space timed at one batch size.

The exhaustive mode (`sampler=grid`) writes one per bucket, so new recorded tables can be made on
any GPU and replayed offline (benchmark=replay) to evaluate samplers against the true optimum.
With `pruner=screen` the configs whose short first look is clearly slower than the best so far
keep that look (marked `first_look`): a faster pass whose top is timed in full.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from autotune import vllm_rules
from autotune.bench.replay import FORMAT
from autotune.formats import device_token, write_atomic
from autotune.space import KERNEL_PARAMS, SearchSpace
from autotune.study import BucketOutcome


def table_file_name(plan, M: int) -> str:
    s = plan.shape
    block = "block" if s.block_shape else ""
    return (f"{device_token(plan.device.name)}_E{s.E}_N{s.N}_K{s.K}_{s.dtype}{block}_M{M}"
            .replace("fp8_w8a8block", "fp8block") + ".json")


def timing_description(identity: Mapping[str, Any]) -> str:
    if identity.get("kind") != "gpu":
        return f"{identity.get('kind')} benchmarker: {json.dumps(dict(identity), sort_keys=True)}"
    return (f"whole MoE call (alignment, quantization, both GEMMs, activation, sum); one CUDA "
            f"graph of {identity['calls_per_graph']} calls, median of {identity['replays']} timed "
            f"replays after warm-up; L2 {identity['l2']}; routing {identity['routing']}")


def grid_table(plan, outcome: BucketOutcome, environment: Mapping[str, Any]) -> dict:
    s = plan.shape
    timings = {SearchSpace.key(r.config): r for r in outcome.records}
    default = vllm_rules.default_config(outcome.M, s.E, s.dtype, s.block_shape)
    default_record = timings.get(SearchSpace.key(default))
    results = []
    for r in outcome.records:
        row: dict[str, Any] = {"config": {k: r.config[k] for k in KERNEL_PARAMS}, "us": r.us}
        if r.pruned:  # pruner=screen: a short first look, clearly slower than the best
            row["first_look"] = True
        if not r.ok:
            row["error"] = r.infeasible or "failed"
        results.append(row)
    return {
        "format": FORMAT,
        "kernel": f"autotune fused-MoE kernel {plan.benchmark_identity.get('kernel', '?')} (Triton)",
        "device_name": plan.device.name,
        "triton_version": environment.get("triton", "unknown"),
        "torch_version": environment.get("torch", "unknown"),
        "environment": dict(environment),
        "shape": {"E": s.E, "N": s.N, "K": s.K, "topk": s.topk, "dtype": s.dtype,
                  "block_shape": list(s.block_shape) if s.block_shape else None,
                  "model": f"{s.model}, tp={s.tp} ep={s.ep}"},
        "M": outcome.M,
        "space": f"{plan.space.name}: {plan.space.size()} configs after constraints "
                 f"({', '.join(plan.space.constraints)}) of {plan.space.raw_size()}",
        "timing": timing_description(plan.benchmark_identity),
        "reference": {"vllm_default_us": default_record.us if default_record else None,
                      "vllm_shipped_us": None},
        "results": results,
    }


def write_grid_table(plan, outcome: BucketOutcome, environment: Mapping[str, Any],
                     folder: Path) -> Path:
    path = Path(folder) / table_file_name(plan, outcome.M)
    write_atomic(path, json.dumps(grid_table(plan, outcome, environment), indent=1) + "\n")
    return path
