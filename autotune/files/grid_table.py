"""The `moe-grid-table/1` format, read and written here: every config of a space timed at one
batch size on one GPU.

The exhaustive mode (`sampler=grid`) writes one per bucket, so new recorded tables can be made on
any GPU and replayed offline (benchmark=replay) to evaluate samplers against the true optimum; the
prior (search/prior.py) learns from them too. With `pruner=screen` the configs whose short first
look is clearly slower than the best so far keep that look (marked `first_look`): a faster pass
whose top is timed in full.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from autotune.bench.protocol import Measurement
from autotune.errors import UserError
from autotune.files.atomic import write_atomic
from autotune.files.names import device_token
from autotune.problem import vllm_rules
from autotune.problem.shape import MoEShape
from autotune.problem.space import SearchSpace
from autotune.problem.vllm_rules import CONFIG_KEYS

if TYPE_CHECKING:  # a bucket's outcome is written, never imported from: files sit below study
    from autotune.study.records import BucketOutcome

FORMAT = "moe-grid-table/1"


class GridTable:
    """One recorded table: config -> microseconds (or the recorded failure) at one M."""

    def __init__(self, path: Path, data: Mapping[str, Any]):
        self.path = path
        self.data = data
        self.M = int(data["M"])
        self.shape = data["shape"]
        self.device_name = data["device_name"]
        self.timings: dict[tuple, Measurement] = {}
        method = {"kind": "replay", "table": path.name, "timing": data.get("timing", "")}
        for row in data["results"]:
            config = vllm_rules.kernel_config(row["config"])
            if row.get("us") is None:
                m = Measurement.failed(row.get("error") or "failed when recorded", **method)
            else:
                m = Measurement(us=float(row["us"]), method=method)
            self.timings[SearchSpace.key(config)] = m

    @classmethod
    def load(cls, path: Path) -> "GridTable":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"recorded table {path} is not readable JSON ({exc}); "
                            f"pass moe-grid-table/1 files") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"recorded table {path} is not a {FORMAT} file")
        try:
            table = cls(Path(path), data)
            for key in ("E", "N", "K", "topk", "dtype"):
                data["shape"][key]
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"recorded table {path} is malformed ({type(exc).__name__}: {exc}); "
                            f"see the {FORMAT} fields in the README") from None
        return table

    def best(self) -> tuple[dict[str, int], float]:
        key, m = min(((k, m) for k, m in self.timings.items() if m.ok), key=lambda km: km[1].us)
        return dict(key), m.us  # type: ignore[return-value]

    def matches(self, shape: MoEShape, device_name: str) -> bool:
        s = self.shape
        block = tuple(s["block_shape"]) if s.get("block_shape") else None
        return ((s["E"], s["N"], s["K"], s["topk"], s["dtype"], block)
                == (shape.E, shape.N, shape.K, shape.topk, shape.dtype, shape.block_shape)
                and device_token(self.device_name) == device_token(device_name))

    def describe(self) -> str:
        s = self.shape
        return (f"{self.path.name}: E={s['E']} N={s['N']} K={s['K']} topk={s['topk']} "
                f"{s['dtype']} M={self.M} on {self.device_name}")


# The name of the tables that ship in the package (autotune/grid_tables: three shapes on an H200).
BUNDLED = "bundled"


def expand_table_paths(patterns: Iterable[str], setting: str = "benchmark.tables",
                       expected: str = "moe-grid-table/1 files, globs or folders, or bundled"
                       ) -> list[Path]:
    """The JSON files at these paths, folders (their *.json) or globs; each must match one.
    `bundled` is the package's own tables (found from any folder, unlike tests/data/grids)."""

    paths: list[Path] = []
    for pattern in patterns:
        p = Path(pattern).expanduser()
        if pattern == BUNDLED and not p.exists():
            p = bundled_tables_dir()
        if p.is_dir():
            matched = sorted(p.glob("*.json"))
        else:
            matched = [Path(x) for x in sorted(glob.glob(str(p)))]
        if not matched:
            raise UserError(f"{setting}: nothing found at {pattern}; give {expected}")
        paths.extend(matched)
    return paths


def bundled_tables_dir() -> Path:
    """Recorded moe-grid-table/1 tables (copies of tests/data/grids, benchmarks/tables)."""
    return Path(__file__).resolve().parents[1] / "grid_tables"  # autotune/grid_tables


# -- writing ---------------------------------------------------------------------------------------
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
        row: dict[str, Any] = {"config": {k: r.config[k] for k in CONFIG_KEYS}, "us": r.us}
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
