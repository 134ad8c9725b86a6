"""Structured-config schema: what each Hydra config group may hold, with types.

Hydra merges the YAML presets of `conf/` and `search_spaces/` into `Config`, so a wrong type or an
unknown key fails at composition with the key's name. The dataclasses are plain (not frozen) so
command-line overrides keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

VLLM_BUCKETS = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 1536, 2048, 3072, 4096]
# The largest batch size a bucket may have: 16 times vLLM's largest, and inputs that fit a GPU
# (a larger M only allocated until it failed, e.g. M=10^12).
MAX_BATCH_SIZE = 65536


@dataclass
class ShapeConfig:
    """A model's MoE layer and how it is split over GPUs."""

    model: str = MISSING  # the model's name; shape=hf: its folder, config.json or HF model id
    # preset: the fields below | hf: each one left null read from model's config.json (hf_config.py)
    source: str = "preset"
    experts: Optional[int] = MISSING  # routed experts in the whole model
    hidden_size: Optional[int] = MISSING  # H: K of the gate-up GEMM
    intermediate_size: Optional[int] = MISSING  # I: one expert's MoE intermediate size
    topk: Optional[int] = MISSING
    dtype: Optional[str] = "fp8_w8a8"  # bf16 | fp16 | fp8_w8a8 | int8_w8a16
    block_shape: Optional[List[int]] = None  # [block_n, block_k] of block-wise quantization
    tp: int = 1  # tensor parallel size of the MoE layer: N = I / tp
    ep: int = 1  # expert parallel size: E = experts / ep


@dataclass
class DeviceConfig:
    """The GPU the result is for; `name` becomes the file's device_name."""

    name: str = MISSING  # exactly as torch.cuda.get_device_name() reports; "auto" = the GPU present
    kind: str = "gpu"  # gpu | cpu (the Triton interpreter)
    sm_count: Optional[int] = None
    memory_bandwidth_gbps: Optional[float] = None
    shared_memory_per_block: Optional[int] = None  # bytes a block may opt in to
    compute_capability: Optional[List[int]] = None
    l2_cache_mb: Optional[float] = None


@dataclass
class SearchSpaceConfig:
    """Parameter ladders (ordered) and the named constraints that drop configs."""

    name: str = MISSING
    description: str = ""
    params: Dict[str, List[int]] = MISSING
    constraints: List[str] = field(default_factory=list)


@dataclass
class SamplerConfig:
    """The search of one bucket: warm starts, then the sampler (settings pinned, see samplers.py).

    The defaults are the settings that won the offline evaluation (benchmarks/search/README.md).
    """

    name: str = "prior_gp"  # prior_gp | tpe | gp | random | grid
    seed: Optional[int] = None
    n_startup_trials: int = 0  # random trials before the model is used; warm starts count
    # tpe:
    multivariate: bool = True
    group: bool = False
    constant_liar: bool = True
    n_ei_candidates: int = 24
    # prior_gp (autotune/search/prior_gp.py): kernel correlation per ladder step; the prior's weight
    step_correlation: float = 0.3
    group_correlation: float = 0.8
    prior_weight: float = 0.5
    # Warm starts, measured first in this order (autotune/search/warm_starts.py):
    neighbour_trials: int = 2  # best configs of each nearest already-tuned bucket (below, above)
    warm_start_default: bool = True  # vLLM's default config for the bucket
    warm_start_compared: bool = True  # the entry of compare_with='s file that vLLM would take
    warm_start_file: Optional[str] = None  # a vLLM config file (e.g. another GPU's): nearest entry
    prior_trials: int = 2  # top configs of the prior learned from other GPUs and shapes
    # The prior's sources (autotune/search/prior.py): vLLM config files and/or recorded moe-grid-table/1
    # tables, as files/folders/globs; null: the bundled ones (autotune/vllm_configs, grid_tables).
    prior_files: Optional[List[str]] = None
    prior_source: str = "both"  # both | shipped (vLLM's files) | tables (recorded tables)
    # A recorded table (every config of the space timed with our kernel) counts like this many
    # entries of a vLLM file (one tuned winner each).
    prior_table_weight: float = 16.0
    # Proposals asked ahead of their measurement, so the compile pool builds them while the GPU
    # times others. 1: each proposal sees every result before it (offline, 4 raised the p90 of
    # measurements to within 1% from 5 to 8; its GPU-time gain is not measured yet).
    lookahead: int = 1


@dataclass
class PrunerConfig:
    name: str = "none"  # none | screen (a cheap first look; skip the full timing if clearly slower)
    margin: float = 0.2  # screen: prune when the first look is this much slower than the best


@dataclass
class BenchmarkConfig:
    name: str = "auto"  # auto (gpu or interpreter, from device.kind) | gpu | interpreter | replay
    # replay: moe-grid-table/1 files, globs or folders, or `bundled` (autotune/grid_tables); a
    # list, or one of them (Any: OmegaConf has no union of str and list)
    tables: Any = field(default_factory=list)
    default_buckets: Optional[List[int]] = None  # buckets when the top-level `buckets` is null
    calls_per_graph: int = 10
    # Replays of a config's CUDA graph: the warmup's dropped, the median of the rest is its time.
    # At large M a config's time drifts over its first replays (H200: 2-7% in 25). 10 + 6 ranked
    # configs as 5 + 20 did at every profiled bucket (H200), and whole tunes with it on an H100
    # took about 20% less wall time with entries as fast (benchmarks/speed/README.md). 2 + 6
    # mis-ranked two configs 4% apart at M=1024 on an H200.
    warmup_replays: int = 10
    replays: int = 6
    # Up to this batch size the calls are memory bound and a config's time does not drift: there
    # `steady_warmup_replays` will do. H200 profile (benchmarks/speed/h200/session9/analysis_*):
    # at M = 1, 8 and 64 every protocol down to 1 + 3 chose as 5 + 20, in bf16 and fp8; at
    # M=256 (fp8) 2 + 6 did not. 0: `warmup_replays` at every M.
    steady_max_M: int = 64
    steady_warmup_replays: int = 2
    # What L2 holds when a call starts (autotune/bench/timing.py): hot (same weights every call,
    # as vLLM's tuner) | cold (rotate weight copies) | layers (a stack of layers, as serving runs)
    l2: str = "layers"
    # layers: at least this many layers, each with its own routing and weights (the time averages
    # over them); more layers also when the others' weights would not fill L2 three times over
    min_layers: int = 4
    routing: str = "uniform"  # uniform | skewed
    routing_skew: float = 1.0  # exponent of the skewed (Zipf-like) expert popularity
    seed: int = 0
    # auto: as vLLM runs each config on this GPU (autotune/problem/vllm_rules.py) | on | off
    swap_ab: str = "auto"
    compile_workers: int = -1  # processes compiling ahead; -1: all CPU cores but two
    # Configs the prior ranks first, compiled in the pool's spare time (prior_gp; 0: off).
    speculate: int = 128
    measure_timeout_s: float = 120.0  # a measurement that takes longer is a hung kernel
    # Re-time in one worker request, each config's graph captured once (a measurement captures
    # it again every round). Off on the GPU: there it chose as well but took longer
    # (benchmarks/speed/README.md); the CPU interpreter always does it.
    rounds_in_worker: bool = False
    # The measuring worker forked from the server the compile pool comes from (torch and Triton
    # imported already) instead of spawned: off until measured on a GPU.
    worker_from_server: bool = False


@dataclass
class Config:
    shape: ShapeConfig = MISSING
    device: DeviceConfig = MISSING
    search_space: SearchSpaceConfig = MISSING
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    # Stopping (benchmarks/search/README.md): at most `trials` measurements per bucket (finished
    # trials of a resumed study count), fewer once `patience` of them bring no 0.5% gain.
    trials: int = 32
    patience: Optional[int] = 16
    buckets: Optional[List[int]] = None  # null: the benchmark's default (vLLM's 18 batch sizes)
    # sqlite:///f.db, journal:f.journal or postgresql://...; null: sqlite file under outputs/
    storage: Optional[str] = None
    workers: int = 1  # measuring processes sharing the studies (GPU runs: one per GPU)
    wait_for_gpu: bool = False  # a GPU another run measures on: wait for it (false: refuse)
    output_dir: str = "outputs/configs"
    table_dir: str = "outputs/tables"  # sampler=grid records a moe-grid-table/1 file per bucket
    finalists: int = 3  # best trials of a bucket re-timed with vLLM's default before one is written
    # Interleaved rounds of that re-timing (median per config), and up to 2 more while the rounds
    # of a config near the fastest disagree by more than 2% (consolidate/retime.py). null: 2 up
    # to M=512 and 3 above. Replayed over 679 stored buckets, 3 rather than 5 took 35% fewer
    # re-timings for a mean loss 0.005% higher (benchmarks/speed/retime_protocols_15.md), and 2
    # rather than 3 up to M=512 picked as well (retime_protocols_18.md).
    retime_rounds: Optional[int] = None
    # Re-time a finished bucket while the next one searches, in the GPU's idle time between the
    # search's measurements (run/settler.py); false: before it. The replay tables never do.
    retime_alongside: bool = True
    # Two bucket loops on the one GPU: one up from the smallest batch size (the tuner's own work
    # and compiles hold it up more than the GPU does) and one down from the largest (mostly GPU
    # time), measuring in turn (run/buckets.py); false: one loop up from the smallest. Off until
    # a GPU has measured it: offline it needs as few measurements (benchmarks/speed/
    # two_loops_16.md), but what alternating small and large kernels does to the timings, and
    # to the wall time, is not measured yet.
    from_both_ends: bool = False
    # Rounds of the check between buckets: it writes nothing into the file, only reports, so it
    # never takes the re-timing's extra rounds (a 1% margin to report a neighbour as faster).
    midpoint_rounds: int = 3
    compare_with: Optional[str] = None  # an existing vLLM config file, re-timed alongside
    sglang: bool = False  # also write an SGLang-named copy under <output_dir>/triton_X_Y_Z/
    install_dir: Optional[str] = None  # also copy the file here (give it as VLLM_TUNED_CONFIG_FOLDER)
    dry_run: bool = False
    progress: bool = True


def unknown_keys(node: Any, prefix: str = "") -> list[tuple[str, list[str]]]:
    """Keys the schema does not have, with the known ones beside them: Hydra's `+key=value`
    appends any key (`+trails=16` for trials), and OmegaConf keeps it on the object."""
    known = [f.name for f in fields(node)]
    out = [(prefix + key, known) for key in vars(node) if key not in known]
    for name in known:
        value = getattr(node, name)
        if is_dataclass(value):
            out += unknown_keys(value, f"{prefix}{name}.")
    return out


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def config_root() -> Path:
    """`conf/`: inside the installed package, or at the top of a source checkout."""
    bundled = package_dir() / "conf"
    return bundled if bundled.is_dir() else package_dir().parent / "conf"


def search_space_root() -> Path:
    bundled = package_dir() / "search_spaces"
    return bundled if bundled.is_dir() else package_dir().parent / "search_spaces"


def register_configs() -> None:
    """Put the schema, and the search spaces of `search_spaces/`, in Hydra's ConfigStore.

    The search spaces live in their own top-level folder for readers; registering them here makes
    them the `search_space` group without a second config path.
    """
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for path in sorted(search_space_root().glob("*.yaml")):
        node = OmegaConf.merge(OmegaConf.structured(SearchSpaceConfig), OmegaConf.load(path))
        cs.store(group="search_space", name=path.stem, node=node)


def to_container(cfg: Any) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
