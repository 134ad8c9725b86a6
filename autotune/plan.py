"""The run's plan: everything resolved from the configuration before any measurement.

`build_plan` is a pure function of the composed config (plus, for `device=auto` or a GPU run, the
GPU present); `Plan.describe` is what `dry_run=true` prints.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from autotune.bench.replay import ReplayBenchmarker
from autotune.config import MAX_BATCH_SIZE, VLLM_BUCKETS, BenchmarkConfig, Config, unknown_keys
from autotune.consolidate.compare import Comparison, load_comparison
from autotune.consolidate.retime import FEWER_ROUNDS_MAX_M, MORE_ROUNDS, rounds_at
from autotune.errors import UserError
from autotune.files.names import config_file_name
from autotune.files.output_paths import check_file, check_folder
from autotune.problem import vllm_rules
from autotune.problem.device import DeviceSpec, resolve_device
from autotune.problem.hf_config import ModelConfig, read_shape_config
from autotune.problem.resources import load_table
from autotune.problem.shape import MoEShape
from autotune.problem.space import SearchSpace
from autotune.problem.vllm_rules import VLLM_VERSION
from autotune.search.prior import PRIOR_SOURCES, PriorSource, load_prior_sources
from autotune.search.samplers import PRUNERS, SAMPLERS
from autotune.search.warm_starts import load_warm_start_file
from autotune.study.names import StudyName
from autotune.study.run_studies import RunStudies
from autotune.study.storage import (
    check_url,
    default_storage_url,
    journal_path,
    sqlite_path,
    storage_file,
)

BENCHMARK_KINDS = ("auto", "gpu", "interpreter", "replay")
L2_MODES = ("hot", "cold", "layers")  # see autotune/bench/timing.py
# E * N * K up to which the interpreter takes seconds per measurement (shape=tiny: 65,536).
INTERPRETER_QUICK_SIZE = 1 << 20


@dataclass
class Plan:
    cfg: Config
    shape: MoEShape
    device: DeviceSpec
    space: SearchSpace
    benchmark_kind: str  # gpu | interpreter | replay
    benchmark_identity: dict[str, Any]
    buckets: list[int]
    storage: str
    output_path: Path
    replay: Optional[ReplayBenchmarker] = None  # its tables loaded (benchmark_kind == "replay")
    comparison: Optional[Comparison] = None  # the file of compare_with=, if given
    model_config: Optional[ModelConfig] = None  # the config the shape was read from (shape=hf)

    @functools.cached_property
    def prior_sources(self) -> list[PriorSource]:
        """What the prior learns from (sampler.prior_files, prior_source), read once per run."""
        return load_prior_sources(self.cfg.sampler.prior_files, self.cfg.sampler.prior_source)

    @property
    def report_dir(self) -> Path:
        """The report goes next to the config file: `<file name without .json>.report/`."""
        return self.output_path.with_name(self.output_path.stem + ".report")

    def study(self, M: int) -> StudyName:
        return StudyName.of(self.device.name, self.shape, self.space, self.benchmark_kind,
                            self.benchmark_identity, M)

    def studies(self, storage) -> RunStudies:
        """The run's studies in this storage, each opened once (study/run_studies.py)."""
        return RunStudies(storage, {M: self.study_name(M) for M in self.buckets})

    def study_name(self, M: int) -> str:
        """Everything that changes the answer: device, shape, space, benchmark (incl. kernel), M."""
        return str(self.study(M))

    def storage_note(self) -> str:
        """The file a relative sqlite:/// or journal: URL opens (sqlite:///tmp/x is ./tmp/x)."""
        path = journal_path(self.storage) or sqlite_path(self.storage)
        return f" (the file {storage_file(self.storage)})" if path and not path.is_absolute() else ""

    def interpreter_warning(self) -> Optional[str]:
        """A real shape on device=cpu: Triton's interpreter needs one to three minutes per
        measurement (65-190 s measured for qwen35_tp1 on 2 cores) where shape=tiny needs 1-2 s."""
        s, c = self.shape, self.cfg
        if self.benchmark_kind != "interpreter" or s.E * s.N * s.K <= INTERPRETER_QUICK_SIZE:
            return None
        measurements = sum(c.trials + (c.finalists + 1) * rounds_at(M, c.retime_rounds)
                           for M in self.buckets)
        return (f"{s.model or 'this shape'} on device=cpu runs in Triton's interpreter at one to three "
                f"minutes per measurement, and this run makes about {measurements}: expect "
                f"{measurements} minutes or more (shape=tiny device=cpu is the quick smoke test)")

    def describe(self) -> str:
        s, c = self.shape, self.cfg
        split = f"tp={s.tp} ep={s.ep}"
        bench = ", ".join(f"{k}={v}" for k, v in self.benchmark_identity.items() if k != "kind")
        lines = [
            *(self.model_config.describe() if self.model_config else []),
            f"shape      {s.model} ({split}): {s.describe()}",
            f"device     {self.device.name} ({self.device.kind})",
            f"benchmark  {self.benchmark_kind}: {bench}",
            f"space      {self.space.name}: {self.space.size()} of {self.space.raw_size()} configs "
            f"after constraints ({', '.join(self.space.constraints) or 'none'})",
            *self.shared_memory_lines(),
            f"sampler    {c.sampler.name}; {c.trials} measurements per bucket"
            + (f", patience {c.patience}" if c.patience else "")
            + (f"; a first look at each config, pruned {100 * c.pruner.margin:.0f}% behind the best"
               if c.pruner.name == "screen" else ""),
            f"buckets    {' '.join(map(str, self.buckets))}" + self._loops_note(),
            f"storage    {self.storage}" + self.storage_note()
            + (f" (shared by {c.workers} workers)" if c.workers > 1 else ""),
            f"studies    {self.study_name(self.buckets[0])}"
            + (f"  ... M={self.buckets[-1]} ({len(self.buckets)} studies)" if len(self.buckets) > 1
               else ""),
            f"finalists  {c.finalists} per bucket, re-timed in {self._retime_rounds_note()} "
            f"with vLLM's default"
            + (f" and {self.comparison.path.name}" if self.comparison else "")
            + (", while the next bucket searches" if c.retime_alongside
               and self.benchmark_kind != "replay" else ""),
            f"vllm       {self.vllm_variant()}",
            f"output     {self.output_path}",
            f"report     {self.report_dir}/",
        ]
        if c.sglang:
            lines.append(f"sglang     {self.output_path.parent}/triton_X_Y_Z/ (Triton's version)")
        if c.install_dir:
            lines.append(f"install    {c.install_dir}/ (VLLM_TUNED_CONFIG_FOLDER)")
        if self.interpreter_warning():
            lines.append(f"warning    {self.interpreter_warning()}")
        return "\n".join(lines)

    def loops(self) -> list[list[int]]:
        """The bucket loops and the order each goes through its buckets (run/buckets.py): two
        with `from_both_ends` (one run measuring, more than one bucket), else one."""
        c = self.cfg
        if c.from_both_ends and c.workers == 1 and self.benchmark_kind != "replay":
            low, high = split_for_two_loops(self.buckets)
            if high:
                return [low, high]
        return [list(self.buckets)]

    def _loops_note(self) -> str:
        loops = self.loops()
        if len(loops) == 1:
            return ""
        (low, high) = loops
        return f" (two loops: up from {low[0]} to {low[-1]}, down from {high[0]} to {high[-1]})"

    def _retime_rounds_note(self) -> str:
        asked = self.cfg.retime_rounds
        more = f"up to {MORE_ROUNDS} more where they disagree"
        if asked is not None:
            return f"{asked} interleaved rounds ({more})"
        small, large = (rounds_at(M, None) for M in (1, FEWER_ROUNDS_MAX_M + 1))
        return (f"{small} interleaved rounds up to M={FEWER_ROUNDS_MAX_M} and {large} above "
                f"({more})")

    def shared_memory_lines(self) -> list[str]:
        """How the space's shared-memory limit was decided, for a GPU preset with a known limit."""
        limit = self.device.shared_memory_per_block
        if self.device.kind != "gpu" or limit is None or "shared_memory" not in self.space.constraints:
            return []
        table = self.space.context.resources
        if table is None:
            return [f"shared mem estimated (no compiled table for this architecture and dtype): "
                    f"drops {self.space.shared_memory_drops()} configs over {limit} bytes"]
        installed = importlib.metadata.version("triton")
        here = "" if installed == table.triton_version else f"; this run has Triton {installed}"
        return [f"shared mem compiled for {table.target} (Triton {table.triton_version}{here}): "
                f"drops {self.space.shared_memory_drops()} configs over {limit} bytes or not "
                f"compiling; the estimate would drop {self.space.shared_memory_drops(estimated=True)}"]

    def vllm_variant(self) -> str:
        """Which kernel variant vLLM runs for this shape on this device (what is timed)."""
        dtype, capability = self.shape.dtype, self.device.compute_capability
        small_tile = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64}
        swap = ("SWAP_AB where BLOCK_SIZE_M < 64 and BLOCK_SIZE_N >= 64"
                if vllm_rules.swap_ab(small_tile, dtype, capability) else "no SWAP_AB")
        text = f"{VLLM_VERSION}'s variant on this device: {swap}"
        if vllm_rules.uses_tensor_descriptors(dtype, capability, os.environ.get("VLLM_TRITON_USE_TD")):
            text += ("; with VLLM_TRITON_USE_TD=1 vLLM runs its tensor-descriptor path, which is "
                     "not timed here")
        return text


def split_for_two_loops(buckets: Sequence[int]) -> tuple[list[int], list[int]]:
    """The two bucket loops' shares (run/buckets.py): the smaller half of the batch sizes, tuned
    up from the smallest, and the larger half, tuned down from the largest. Each bucket still
    starts from a tuned neighbour's winners, and the two meet in the middle."""
    Ms = sorted(buckets)
    half = (len(Ms) + 1) // 2
    return Ms[:half], Ms[half:][::-1]


def _check_dtype_on_device(dtype: str, device: DeviceSpec) -> None:
    # Triton's fp8 e4m3 (what fp8_w8a8 stores) exists from compute capability 8.9 (Ada) on.
    capability = device.compute_capability
    if dtype == "fp8_w8a8" and capability is not None and tuple(capability) < (8, 9):
        raise UserError(f"shape.dtype=fp8_w8a8 on {device.name} (compute capability "
                        f"{capability[0]}.{capability[1]}): Triton's fp8 needs 8.9 or newer; "
                        "use shape.dtype=bf16 or int8_w8a16")


def build_plan(cfg: Config, *, probe_gpu: bool = True) -> Plan:
    """Resolve shape, device, space, benchmark, buckets, storage and output file; refuse bad input.

    probe_gpu=False skips checking that the configured GPU is the one present (dry runs).
    """
    _check_known_keys(cfg)
    shape, model_config = _shape(cfg)
    kind = benchmark_kind(cfg)
    device = resolve_device(cfg.device, need_gpu=(kind == "gpu"), probe=probe_gpu)
    _check_dtype_on_device(shape.dtype, device)
    resources = (load_table(device.compute_capability, shape.dtype, shape.block_shape)
                 if device.kind == "gpu" else None)
    space = SearchSpace.from_config(cfg.search_space, shape, device.shared_memory_per_block,
                                    resources)
    _check_settings(cfg, kind)
    # Named input files are read now, so a missing or broken one stops the run before it measures.
    if cfg.sampler.warm_start_file:
        load_warm_start_file(cfg.sampler.warm_start_file)
    comparison = None
    if cfg.compare_with:
        comparison = load_comparison(cfg.compare_with, shape, device.name)
    replay, identity, buckets = _benchmark(cfg, kind, shape, device)
    storage = cfg.storage or default_storage_url(Path("outputs"))
    check_url(storage)
    if storage_file(storage) is not None:  # read-only and full disks: open_storage says more
        check_file(f"storage={storage}", storage_file(storage), writable=False)
    name = config_file_name(shape.E, shape.N, device.name, shape.dtype, shape.block_shape)
    plan = Plan(cfg=cfg, shape=shape, device=device, space=space, benchmark_kind=kind,
                benchmark_identity=identity, buckets=buckets, storage=storage,
                output_path=Path(cfg.output_dir) / name, replay=replay, comparison=comparison,
                model_config=model_config)
    if cfg.sampler.prior_files is not None:
        plan.prior_sources  # noqa: B018 - read (and kept) now: a broken file is refused here
    _check_outputs(plan)
    return plan


def _shape(cfg: Config):
    """The layer's shape, and the model config it was read from (shape=hf) or None."""
    shape_cfg, model_config = cfg.shape, None
    _check_choice("shape.source", cfg.shape.source, ("preset", "hf"))
    if cfg.shape.source == "hf":
        shape_cfg, model_config = read_shape_config(cfg.shape)
    return MoEShape.from_config(shape_cfg), model_config


def _check_settings(cfg: Config, kind: str) -> None:
    """The choices and counts of the config, refused one at a time with the fix."""
    _check_choice("sampler.name", cfg.sampler.name, SAMPLERS)
    _check_choice("sampler.prior_source", cfg.sampler.prior_source, PRIOR_SOURCES)
    _check_choice("pruner.name", cfg.pruner.name, PRUNERS)
    _check_choice("benchmark.l2", cfg.benchmark.l2, L2_MODES)
    _check_choice("benchmark.routing", cfg.benchmark.routing, ("uniform", "skewed"))
    _check_choice("benchmark.swap_ab", cfg.benchmark.swap_ab, ("auto", "on", "off"))
    if cfg.sampler.prior_table_weight < 0:
        raise UserError(f"sampler.prior_table_weight={cfg.sampler.prior_table_weight}: must be 0 "
                        "or more (0: recorded tables do not count)")
    _check_positive("trials", cfg.trials)
    _check_positive("workers", cfg.workers)
    if kind != "gpu":  # GPU runs: one worker per visible GPU (workers.gpu_pins)
        _check_cpu_workers(cfg.workers)
    if cfg.patience is not None:
        _check_positive("patience", cfg.patience)
    _check_positive("finalists", cfg.finalists)
    if cfg.retime_rounds is not None:
        _check_positive("retime_rounds", cfg.retime_rounds)
    _check_positive("midpoint_rounds", cfg.midpoint_rounds)
    _check_positive("benchmark.min_layers", cfg.benchmark.min_layers)


def _benchmark(cfg: Config, kind: str, shape: MoEShape, device: DeviceSpec):
    """The replay benchmarker (replay only: its tables are loaded here), the benchmark's
    identity, and the buckets."""
    replay = None
    if kind == "replay":
        replay = ReplayBenchmarker(_table_patterns(cfg.benchmark.tables), shape, device.name)
        identity = replay.identity()
        default_buckets = replay.default_buckets()
    else:
        identity = benchmark_identity(cfg, kind)
        default_buckets = VLLM_BUCKETS
    buckets = _buckets(cfg.buckets if cfg.buckets is not None else default_buckets)
    if replay is not None:
        missing = [m for m in buckets if m not in replay.tables]
        if missing:
            raise UserError(f"buckets {missing} have no recorded table; recorded: "
                            f"{sorted(replay.tables)}")
    return replay, identity, buckets


def _check_outputs(plan: Plan) -> None:
    """Every path the run writes at its end, refused now if it cannot be written then."""
    cfg = plan.cfg
    setting = f"output_dir={cfg.output_dir}"
    check_folder(setting, cfg.output_dir)
    check_file(setting, plan.output_path)
    check_folder(setting, plan.report_dir)
    if cfg.install_dir:
        check_file(f"install_dir={cfg.install_dir}", Path(cfg.install_dir) / plan.output_path.name)
    if cfg.sampler.name == "grid":  # only the exhaustive pass records tables
        check_folder(f"table_dir={cfg.table_dir}", cfg.table_dir)


def benchmark_identity(cfg: Config, kind: str) -> dict[str, Any]:
    """The timing settings that change the numbers (they go into study names)."""
    from autotune.kernel.version import KERNEL_VERSION

    b = cfg.benchmark
    # The vLLM whose runtime rules (kernel variant, BLOCK_SIZE_K clamp, shortcuts) were timed.
    identity: dict[str, Any] = {"kind": kind, "kernel": KERNEL_VERSION, "vllm": VLLM_VERSION}
    if kind == "gpu":
        identity.update(calls_per_graph=b.calls_per_graph, replays=b.replays, l2=b.l2,
                        routing=b.routing)
        if b.swap_ab != "auto":
            identity["swap_ab"] = b.swap_ab
        if b.l2 == "layers" and b.min_layers != BenchmarkConfig.min_layers:
            identity["min_layers"] = b.min_layers
        if b.routing != "uniform":
            identity["routing_skew"] = b.routing_skew
    return identity


def benchmark_kind(cfg: Config) -> str:
    """What the run measures with: gpu | interpreter | replay."""
    name = cfg.benchmark.name
    if name not in BENCHMARK_KINDS:
        raise UserError(f"benchmark.name={name}: use one of {', '.join(BENCHMARK_KINDS)}")
    if name == "auto":
        return "interpreter" if cfg.device.kind == "cpu" else "gpu"
    if name == "gpu" and cfg.device.kind == "cpu":
        raise UserError("benchmark.name=gpu with device=cpu: the CPU runs the interpreter "
                        "benchmarker; use benchmark.name=auto or a GPU device")
    return name


def _table_patterns(value: Any) -> list[str]:
    """benchmark.tables as a list: one path (`benchmark.tables=bundled`) or several."""
    patterns = [value] if isinstance(value, (str, Path)) else value
    if not isinstance(patterns, (list, tuple)) or not all(
            isinstance(p, (str, Path)) for p in patterns):
        raise UserError(f"benchmark.tables={value}: give moe-grid-table/1 files, globs or folders "
                        f"(benchmark.tables=[a.json,tables/]), or bundled")
    return [str(p) for p in patterns]


def _buckets(values: Optional[list[int]]) -> list[int]:
    buckets = [int(v) for v in (values or [])]
    if not buckets:
        raise UserError("buckets=[] is empty; give batch sizes, e.g. buckets=[1,16,64]")
    bad = [v for v in buckets if v < 1]
    if bad:
        raise UserError(f"buckets {bad}: batch sizes must be at least 1")
    bad = [v for v in buckets if v > MAX_BATCH_SIZE]
    if bad:
        raise UserError(f"buckets {bad}: batch sizes are at most {MAX_BATCH_SIZE}; vLLM serves a "
                        f"larger batch with the entry of the largest key")
    if len(set(buckets)) != len(buckets):
        raise UserError(f"buckets={buckets} repeats a batch size; list each once")
    return sorted(buckets)


def _check_known_keys(cfg: Config) -> None:
    for key, known in unknown_keys(cfg):
        close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
        hint = f" (did you mean {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}?)" \
            if close else ""
        raise UserError(f"+{key}: there is no setting {key}{hint}; `+` adds a key this run would "
                        f"ignore (python -m autotune --help lists the settings)")


def _check_cpu_workers(workers: int) -> None:
    """A CPU run's workers each keep a core busy: more than the cores only thrash the machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if workers > (cores or 1):
        raise UserError(f"workers={workers}: this run measures on the CPU, which has {cores} "
                        f"core(s) here; use workers={cores} or fewer")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{key}={value}: use one of {', '.join(choices)}")


def _check_positive(key: str, value: int) -> None:
    if value < 1:
        raise UserError(f"{key}={value}: must be at least 1")
