"""A prior over the search space from vLLM's shipped config files of other GPUs and shapes.

vLLM ships tuned files for many GPUs and shapes, and good tiles transfer between them: at a given
batch size the winners cluster (small BLOCK_SIZE_M at small M, BLOCK_SIZE_K at the quantization
block, 4 warps, 3-4 stages). The prior is a kernel density over those entries in ladder-index
space, each entry weighted by how alike its source is (same dtype and quantization block, same GPU,
nearby batch size). Its ranking of the space picks a bucket's first trials.

The file for the very GPU and shape being tuned is never used: that is the answer a tuned file is
compared with, and copying it would prove nothing.
"""

from __future__ import annotations

import glob
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from autotune.errors import UserError
from autotune.formats import device_token, dtype_token, parse_file_name, read_entries
from autotune.space import Config, SearchSpace


def bundled_files_dir() -> Path:
    """vLLM 0.33.0's shipped config files, copied byte for byte into the package."""
    return Path(__file__).resolve().parent / "vllm_configs"


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


def load_shipped_files(patterns: Optional[Iterable[str]] = None) -> list[ShippedFile]:
    """The files at the given paths, folders or globs; None: the bundled vLLM files."""
    if patterns is None:
        return [ShippedFile.load(p) for p in sorted(bundled_files_dir().glob("*.json"))]
    files = []
    for pattern in patterns:
        p = Path(pattern).expanduser()
        paths = sorted(p.glob("*.json")) if p.is_dir() else sorted(map(Path, glob.glob(str(p))))
        if not paths:
            raise UserError(f"sampler.prior_files: nothing found at {pattern}; give vLLM config "
                            f"files, globs or folders, or null for the bundled ones")
        files.extend(ShippedFile.load(path) for path in paths)
    return files


@dataclass(frozen=True)
class PriorWeights:
    """How much an entry of a shipped file says about a config of the bucket being tuned."""

    step: float = 0.3  # similarity per ladder step of BLOCK_SIZE_*, num_warps, num_stages
    group_step: float = 0.8  # per step of GROUP_SIZE_M, which matters little
    m_octaves: float = 1.0  # an entry one octave of batch size away weighs exp(-1)
    other_quant: float = 0.1  # an entry from a file of another dtype or quantization block
    other_device: float = 0.5  # an entry from a file for another GPU


def rank_configs(space: SearchSpace, files: Iterable[ShippedFile], device_name: str, M: int,
                 weights: PriorWeights = PriorWeights()) -> list[Config]:
    """Every config of the space, most probable first under the prior (ties: ladder order).

    Empty when no file but the one for this very GPU and shape is given.
    """
    configs, score = prior_scores(space, files, device_name, M, weights)
    if score is None:
        return []
    order = sorted(range(len(configs)), key=lambda i: -score[i])  # stable: ladder order on ties
    return [configs[i] for i in order]


def prior_scores(space: SearchSpace, files: Iterable[ShippedFile], device_name: str, M: int,
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
                 files: Optional[Sequence[ShippedFile]] = None) -> Optional[np.ndarray]:
    """The prior density of each config of space.configs() for bucket M (for prior_gp).

    files: already loaded shipped files; else those at prior_files (None: the bundled ones).
    """
    files = files if files is not None else load_shipped_files(prior_files)
    return prior_scores(space, files, device_name, M)[1]


def space_index(space: SearchSpace, configs: Iterable[Config]) -> np.ndarray:
    """Configs as rows of ladder indices (the coordinates samplers and the prior work in)."""
    return np.array([[space.params[k].index(c[k]) for k in space.params] for c in configs], float)


def _entry_points(space: SearchSpace, files: Iterable[ShippedFile], device_name: str, M: int,
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
        for key, entry in f.entries.items():
            octaves = abs(math.log2(key) - math.log2(M))
            points.append(_fractional_index(space, as_run(space, entry)))
            w.append(base * math.exp(-octaves / weights.m_octaves))
    return np.array(points, float), np.array(w, float)


def as_run(space: SearchSpace, entry: Config) -> Config:
    """The config the target kernel would run: a BLOCK_SIZE_K above the block is the block."""
    block = space.context.shape.block_shape
    if block is None:
        return entry
    return {**entry, "BLOCK_SIZE_K": min(entry["BLOCK_SIZE_K"], block[1])}


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
