"""A prior over the search space from what was tuned or recorded for other GPUs and shapes.

Two kinds of source, both bundled in the package:
- vLLM's shipped config files (autotune/vllm_configs): one tuned winner per batch size;
- recorded `moe-grid-table/1` tables (autotune/grid_tables): every config timed at one batch size,
  of which the fastest few count, by rank (so different shapes' absolute times do not matter).
Good tiles transfer between shapes and GPUs: at a given batch size the winners cluster (small
BLOCK_SIZE_M at small M, BLOCK_SIZE_K at the quantization block, 4 warps, 3-4 stages). The prior
is a kernel density over those configs in ladder-index space, each weighted by how alike its source
is (same dtype and quantization block, same GPU, nearby batch size).

A source for the very GPU and shape being tuned is never used: that is the answer a tuned file is
compared with (or the table it is judged on), and copying it would prove nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from autotune.config import SamplerConfig
from autotune.errors import UserError
from autotune.files.grid_table import GridTable, bundled_tables_dir, expand_table_paths
from autotune.files.names import device_token, dtype_token, parse_file_name
from autotune.files.vllm import read_entries
from autotune.problem import vllm_rules
from autotune.problem.space import Config, SearchSpace

PRIOR_SOURCES = ("both", "shipped", "tables")


def bundled_files_dir() -> Path:
    """vLLM 0.33.0's shipped config files, copied byte for byte into the package."""
    return Path(__file__).resolve().parents[1] / "vllm_configs"  # autotune/vllm_configs


@dataclass(frozen=True)
class ShippedFile:
    """One vLLM config file: what it is for (from its name) and its entries."""

    path: Path
    E: int
    N: int
    device: str  # the device_name token of the file name
    dtype: Optional[str]  # the dtype token; None for bf16/fp16
    block_shape: Optional[tuple[int, int]]
    entries: dict[int, Config]

    @classmethod
    def load(cls, path: Path) -> "ShippedFile":
        parsed = parse_file_name(path.name)
        if parsed is None:
            raise UserError(f"{path} is not named like a vLLM config file "
                            f"(E=..,N=..,device_name=..[,dtype=..][,block_shape=[..]].json)")
        try:
            entries = read_entries(path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
                ValueError, AttributeError) as exc:
            raise UserError(f"vLLM config file {path} is not readable ({type(exc).__name__}: "
                            f"{exc}); pass a file vLLM would load") from None
        if not entries:
            raise UserError(f"vLLM config file {path} has no batch-size entries")
        return cls(path, parsed["E"], parsed["N"], parsed["device"], parsed["dtype"],
                   parsed["block_shape"], entries)

    def is_for(self, space: SearchSpace, device_name: str) -> bool:
        """Whether this is the file for exactly the GPU and shape the space is tuned for."""
        s = space.context.shape
        return ((self.E, self.N, self.dtype, self.block_shape)
                == (s.E, s.N, dtype_token(s.dtype), s.block_shape)
                and self.device == device_token(device_name))


@dataclass(frozen=True)
class RecordedTable:
    """One recorded table as a prior source: its GPU, shape, M and its fastest configs."""

    path: Path
    E: int
    N: int
    K: int
    device: str  # device token
    dtype: Optional[str]  # dtype token; None for bf16/fp16
    block_shape: Optional[tuple[int, int]]
    M: int
    ranked: tuple[Config, ...]  # fastest first, TABLE_TOP at most

    @classmethod
    def load(cls, path: Path) -> "RecordedTable":
        t = GridTable.load(path)
        s = t.shape
        ok = sorted((m.us, key) for key, m in t.timings.items() if m.ok)
        if not ok:
            raise UserError(f"recorded table {path} has no successful timing; drop it from "
                            f"sampler.prior_files")
        block = tuple(s["block_shape"]) if s.get("block_shape") else None
        return cls(Path(path), int(s["E"]), int(s["N"]), int(s["K"]),
                   device_token(t.device_name), dtype_token(s["dtype"]), block,  # type: ignore
                   t.M, tuple(dict(key) for _, key in ok[:TABLE_TOP]))

    def is_for(self, space: SearchSpace, device_name: str) -> bool:
        """Whether this table is of exactly the GPU and shape (E, N, K, dtype, block) tuned."""
        s = space.context.shape
        return ((self.E, self.N, self.K, self.dtype, self.block_shape)
                == (s.E, s.N, s.K, dtype_token(s.dtype), s.block_shape)
                and self.device == device_token(device_name))


PriorSource = Union[ShippedFile, RecordedTable]
# A table's fastest configs that count, weighted 1/rank: the top few are within about 1% of each
# other (GROUP_SIZE_M variants) and say which tiles win; further down the order is mostly noise.
TABLE_TOP = 8


def load_shipped_files(patterns: Optional[Iterable[str]] = None) -> list[ShippedFile]:
    """The vLLM files at the given paths, folders or globs; None: the bundled vLLM files."""
    return [f for f in load_prior_sources(patterns, "shipped") if isinstance(f, ShippedFile)]


def load_prior_sources(patterns: Optional[Iterable[str]] = None,
                       kinds: str = "both") -> list[PriorSource]:
    """vLLM config files and recorded tables at the given paths, folders or globs.

    patterns None: the bundled ones. kinds: both | shipped (vLLM files) | tables (recorded).
    A file is a vLLM config file when named like one, else it must be a moe-grid-table/1 file.
    """
    if kinds not in PRIOR_SOURCES:
        raise UserError(f"sampler.prior_source={kinds}: use one of {', '.join(PRIOR_SOURCES)}")
    if patterns is None:
        paths = sorted(bundled_files_dir().glob("*.json")) * (kinds != "tables") \
            + sorted(bundled_tables_dir().glob("*.json")) * (kinds != "shipped")
    else:
        paths = expand_table_paths(patterns, "sampler.prior_files",
                                   "vLLM config files or moe-grid-table/1 tables (files, globs "
                                   "or folders), or null for the bundled ones")
    out: list[PriorSource] = []
    for path in paths:
        if parse_file_name(path.name) is not None:
            if kinds != "tables":
                out.append(ShippedFile.load(path))
        elif _is_table(path):
            if kinds != "shipped":
                out.append(RecordedTable.load(path))
        else:
            raise UserError(f"{path} is not named like a vLLM config file (E=..,N=..,"
                            f"device_name=..[,dtype=..][,block_shape=[..]].json) nor a "
                            f"moe-grid-table/1 table")
    return out


def _is_table(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return '"moe-grid-table/1"' in f.read(200)
    except (OSError, UnicodeDecodeError):
        return False


@dataclass(frozen=True)
class PriorWeights:
    """How much an entry of a shipped file says about a config of the bucket being tuned."""

    step: float = 0.3  # similarity per ladder step of BLOCK_SIZE_*, num_warps, num_stages
    group_step: float = 0.8  # per step of GROUP_SIZE_M, which matters little
    m_octaves: float = 1.0  # an entry one octave of batch size away weighs exp(-1)
    other_quant: float = 0.1  # an entry from a file of another dtype or quantization block
    other_device: float = 0.5  # an entry from a file for another GPU
    # a recorded table counts like this many entries of a shipped file
    table: float = SamplerConfig.prior_table_weight


def rank_configs(space: SearchSpace, files: Iterable[PriorSource], device_name: str, M: int,
                 weights: PriorWeights = PriorWeights()) -> list[Config]:
    """Every config of the space, most probable first under the prior (ties: ladder order).

    Empty when no file but the one for this very GPU and shape is given.
    """
    configs, score = prior_scores(space, files, device_name, M, weights)
    if score is None:
        return []
    order = sorted(range(len(configs)), key=lambda i: -score[i])  # stable: ladder order on ties
    return [configs[i] for i in order]


def prior_scores(space: SearchSpace, files: Iterable[PriorSource], device_name: str, M: int,
                 weights: PriorWeights = PriorWeights()
                 ) -> tuple[list[Config], Optional[np.ndarray]]:
    """Every config of the space (ladder order) and its prior density (None: no usable file)."""
    configs = list(space.configs())
    points, w = _entry_points(space, files, device_name, M, weights)
    if not len(points):
        return configs, None
    index = space_index(space, configs)
    log_step = np.array([math.log(weights.group_step if k == "GROUP_SIZE_M" else weights.step)
                         for k in space.params])
    # (configs, entries): log of the product over parameters of step ** |index distance|
    distance = np.abs(index[:, None, :] - points[None, :, :])
    return configs, np.exp((distance * log_step).sum(axis=2)) @ w


def bucket_prior(space: SearchSpace, device_name: str, M: int,
                 prior_files: Optional[Iterable[str]] = None,
                 files: Optional[Sequence[PriorSource]] = None,
                 prior_source: str = "both",
                 weights: PriorWeights = PriorWeights()) -> Optional[np.ndarray]:
    """The prior density of each config of space.configs() for bucket M (for prior_gp).

    files: already loaded sources; else those at prior_files (None: the bundled ones) of the
    kinds prior_source names.
    """
    files = files if files is not None else load_prior_sources(prior_files, prior_source)
    return prior_scores(space, files, device_name, M, weights)[1]


def space_index(space: SearchSpace, configs: Iterable[Config]) -> np.ndarray:
    """Configs as rows of ladder indices (the coordinates samplers and the prior work in)."""
    return np.array([[space.params[k].index(c[k]) for k in space.params] for c in configs], float)


def _entry_points(space: SearchSpace, files: Iterable[PriorSource], device_name: str, M: int,
                  weights: PriorWeights) -> tuple[np.ndarray, np.ndarray]:
    """Each usable entry as a (fractional) ladder-index point, with its weight."""
    shape = space.context.shape
    quant = (dtype_token(shape.dtype), shape.block_shape)
    points, w = [], []
    for f in files:
        if f.is_for(space, device_name):
            continue
        base = 1.0
        if (f.dtype, f.block_shape) != quant:
            base *= weights.other_quant
        if f.device != device_token(device_name):
            base *= weights.other_device
        if isinstance(f, RecordedTable):
            octaves = abs(math.log2(f.M) - math.log2(M))
            shares = [1 / rank for rank in range(1, len(f.ranked) + 1)]
            for config, share in zip(f.ranked, shares):
                points.append(_fractional_index(space, as_run(space, config)))
                w.append(weights.table * base * share / sum(shares)
                         * math.exp(-octaves / weights.m_octaves))
            continue
        for key, entry in f.entries.items():
            octaves = abs(math.log2(key) - math.log2(M))
            points.append(_fractional_index(space, as_run(space, entry)))
            w.append(base * math.exp(-octaves / weights.m_octaves))
    return np.array(points, float), np.array(w, float)


def as_run(space: SearchSpace, entry: Config) -> Config:
    """The config the target kernel would run (vLLM's BLOCK_SIZE_K clamp)."""
    return vllm_rules.runs_as(entry, space.context.shape.block_shape)


def nearest_config(space: SearchSpace, entry: Config) -> Config:
    """The config of the space nearest to an entry of another file (fewest ladder steps away).

    An entry tuned elsewhere may hold values off the ladders (BLOCK_SIZE_M 8) or that the space
    excludes here (BLOCK_SIZE_N 256 with 128-wide quantization blocks).
    """
    configs = list(space.configs())
    point = np.array(_fractional_index(space, as_run(space, entry)))
    steps = np.abs(space_index(space, configs) - point).sum(axis=1)
    return configs[int(np.argmin(steps))]


def _fractional_index(space: SearchSpace, config: Config) -> list[float]:
    """Ladder position of each value; off-ladder values fall between steps (log scale)."""
    out = []
    for key, ladder in space.params.items():
        out.append(_position(ladder, config[key]))
    return out


def _position(ladder: tuple[int, ...], value: int) -> float:
    if value in ladder:
        return float(ladder.index(value))
    logs = [math.log2(v) for v in ladder]
    x = math.log2(value)
    if len(ladder) == 1:
        return 0.0
    if x < logs[0]:
        return (x - logs[0]) / (logs[1] - logs[0])
    if x > logs[-1]:
        return len(ladder) - 1 + (x - logs[-1]) / (logs[-1] - logs[-2])
    i = max(j for j, v in enumerate(logs) if v <= x)
    return i + (x - logs[i]) / (logs[i + 1] - logs[i])
