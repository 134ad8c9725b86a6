"""SearchSpace: the kernel parameters, their ladders, and the constraints that drop configs.

The only place that knows the parameters. Each parameter is an ordered ladder (16, 32, 64, ...);
samplers see the index into the ladder, so neighbouring tile sizes are neighbours to them.
Constraints drop configs the kernel would rewrite at run time (a BLOCK_SIZE_K above the
quantization block runs as the block) or cannot run (shared memory over the device's limit).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Optional

from autotune.config import SearchSpaceConfig
from autotune.errors import UserError
from autotune.problem.resources import ResourceTable
from autotune.problem.shape import MoEShape
from autotune.problem.vllm_rules import CONFIG_KEYS

Config = dict[str, int]


def operand_bytes(dtype: str) -> tuple[int, int]:
    """Bytes per element of the activation (A) and weight (B) tiles the kernel stages."""
    return {"fp8_w8a8": (1, 1), "int8_w8a16": (2, 1)}.get(dtype, (2, 2))


def shared_memory_bytes(config: Mapping[str, int], dtype: str) -> int:
    """Shared memory the software pipeline may need: one A and one B tile per stage, an mbarrier
    per stage and the epilogue's 4 bytes per output column; used where no compiled table exists
    (the kernel's estimate too: kernel/fused_moe.py).

    An upper bound on what Triton allocates where the compiled tables (autotune/resource_tables)
    have been recorded: on sm_100 tiles of BLOCK_SIZE_M >= 64 get num_stages buffers plus 16 to
    528 bytes, smaller ones and every sm_120 tile num_stages - 1 buffers plus up to 512. On Hopper
    it matches where Triton fails: 256x128x128 fp8 tiles fail at 5 stages against 232,448 bytes per
    block and run at 4.
    """
    a, b = operand_bytes(dtype)
    bm, bn, bk = config["BLOCK_SIZE_M"], config["BLOCK_SIZE_N"], config["BLOCK_SIZE_K"]
    return config["num_stages"] * (bm * bk * a + bk * bn * b + 16) + 4 * bn


def _next_pow2(x: int) -> int:
    return 1 << max(0, x - 1).bit_length()


@dataclass(frozen=True)
class Context:
    """What constraints may look at besides the config."""

    shape: MoEShape
    shared_memory_per_block: Optional[int]
    # Compiled resources on the device's architecture, where a table was recorded: exact shared
    # memory instead of the estimate.
    resources: Optional[ResourceTable] = None


def block_quant_violation(config: Mapping[str, int],
                          block_shape: Optional[tuple[int, int]]) -> Optional[str]:
    """Why a tile cannot serve a block-quantized layer (None: it can): vLLM's kernel reads one
    scale per tile, so BLOCK_SIZE_K and BLOCK_SIZE_N must divide the quantization block."""
    if block_shape is None:
        return None
    block_n, block_k = block_shape
    if block_k % config["BLOCK_SIZE_K"]:
        return f"BLOCK_SIZE_K={config['BLOCK_SIZE_K']} does not divide block_k={block_k}"
    if block_n % config["BLOCK_SIZE_N"]:
        return f"BLOCK_SIZE_N={config['BLOCK_SIZE_N']} does not divide block_n={block_n}"
    return None


def _block_quant(cfg: Config, ctx: Context) -> Optional[str]:
    return block_quant_violation(cfg, ctx.shape.block_shape)


def _shared_memory(cfg: Config, ctx: Context) -> Optional[str]:
    limit = ctx.shared_memory_per_block
    compiled = ctx.resources.lookup(cfg) if ctx.resources is not None else None
    if compiled is not None:
        return compiled.reason_not_run(limit, ctx.resources.target)
    need = shared_memory_bytes(cfg, ctx.shape.dtype)
    if limit is not None and need > limit:
        return f"needs {need} bytes of shared memory, the device allows {limit}"
    return None


def _tile_fits_problem(cfg: Config, ctx: Context) -> Optional[str]:
    # A tile wider than the whole problem only adds masked work.
    s = ctx.shape
    if cfg["BLOCK_SIZE_K"] > max(16, _next_pow2(min(s.K, s.N))):
        return f"BLOCK_SIZE_K={cfg['BLOCK_SIZE_K']} exceeds the reduction size"
    if cfg["BLOCK_SIZE_N"] > max(16, _next_pow2(max(2 * s.N, s.K))):
        return f"BLOCK_SIZE_N={cfg['BLOCK_SIZE_N']} exceeds the output width"
    return None


CONSTRAINTS: dict[str, Callable[[Config, Context], Optional[str]]] = {
    "block_quant": _block_quant,
    "shared_memory": _shared_memory,
    "tile_fits_problem": _tile_fits_problem,
}


@dataclass(frozen=True)
class SearchSpace:
    name: str
    params: dict[str, tuple[int, ...]]  # ordered ladders, in CONFIG_KEYS order first
    constraints: tuple[str, ...]
    context: Context

    @classmethod
    def from_config(cls, cfg: SearchSpaceConfig, shape: MoEShape,
                    shared_memory_per_block: Optional[int],
                    resources: Optional[ResourceTable] = None) -> "SearchSpace":
        params = {k: tuple(int(v) for v in vals) for k, vals in cfg.params.items()}
        missing = [k for k in CONFIG_KEYS if k not in params]
        if missing:
            raise UserError(f"search_space={cfg.name} lacks {', '.join(missing)}; every kernel "
                            f"parameter needs a ladder")
        for key, ladder in params.items():
            if not ladder or any(v <= 0 for v in ladder) or list(ladder) != sorted(set(ladder)):
                raise UserError(f"search_space.params.{key}={list(ladder)}: give distinct positive "
                                f"values in ascending order")
        unknown = [c for c in cfg.constraints if c not in CONSTRAINTS]
        if unknown:
            raise UserError(f"search_space.constraints has unknown {', '.join(unknown)}; "
                            f"known: {', '.join(CONSTRAINTS)}")
        ordered = {k: params[k] for k in CONFIG_KEYS}
        ordered.update({k: v for k, v in params.items() if k not in ordered})
        space = cls(cfg.name, ordered, tuple(cfg.constraints), Context(shape, shared_memory_per_block,
                                                                  resources))
        if space.size() == 0:
            raise UserError(f"search_space={cfg.name} has no config left for {shape.describe()} "
                            f"after its constraints ({', '.join(cfg.constraints)})")
        return space

    # -- constraints ---------------------------------------------------------------------------
    def violation(self, config: Mapping[str, int]) -> Optional[str]:
        """Why the config is excluded, or None when it may be measured."""
        cfg = dict(config)
        for name in self.constraints:
            reason = CONSTRAINTS[name](cfg, self.context)
            if reason:
                return f"{name}: {reason}"
        return None

    def configs(self) -> Iterator[Config]:
        """Every config that passes the constraints, in ladder order."""
        keys = list(self.params)
        for values in itertools.product(*self.params.values()):
            cfg = dict(zip(keys, values))
            if self.violation(cfg) is None:
                yield cfg

    @functools.cached_property
    def _size(self) -> int:
        return sum(1 for _ in self.configs())

    def size(self) -> int:
        return self._size

    def shared_memory_drops(self, *, estimated: bool = False) -> int:
        """How many configs that pass every other constraint the shared-memory limit drops;
        estimated=True counts with the estimate even where a compiled table exists."""
        if "shared_memory" not in self.constraints:
            return 0
        ctx = dataclasses.replace(self.context, resources=None) if estimated else self.context
        others = [name for name in self.constraints if name != "shared_memory"]
        keys = list(self.params)
        dropped = 0
        for values in itertools.product(*self.params.values()):
            cfg = dict(zip(keys, values))
            if not any(CONSTRAINTS[name](cfg, ctx) for name in others):
                dropped += _shared_memory(cfg, ctx) is not None
        return dropped

    def raw_size(self) -> int:
        n = 1
        for ladder in self.params.values():
            n *= len(ladder)
        return n

    # -- encoding for samplers -----------------------------------------------------------------
    def encode(self, config: Mapping[str, int]) -> dict[str, int]:
        """Config values -> ladder indices (the parameters a study stores)."""
        try:
            return {k: self.params[k].index(int(config[k])) for k in self.params}
        except (KeyError, ValueError) as exc:
            raise ValueError(f"config {dict(config)} is not in search space {self.name}") from exc

    def decode(self, indices: Mapping[str, int]) -> Config:
        return {k: self.params[k][int(indices[k])] for k in self.params}

    def trial_config(self, trial) -> Optional[Config]:
        """The config an Optuna trial stands for; None while its parameters are incomplete.

        A queued (WAITING) trial's config is the fixed_params it was queued with: another run may
        be popping it, its params half written.
        """
        from optuna.trial import TrialState

        params = (trial.system_attrs.get("fixed_params", {}) if trial.state == TrialState.WAITING
                  else trial.params)
        return self.decode(params) if set(params) == set(self.params) else None

    def group_variants(self, config: Mapping[str, int]) -> list[Config]:
        """The config with each other GROUP_SIZE_M of the space that may be measured. The GP sees
        them as near-copies and seldom proposes them, yet they differ by up to 2% (polish)."""
        if "GROUP_SIZE_M" not in self.params:
            return []
        variants = [{**config, "GROUP_SIZE_M": g} for g in self.params["GROUP_SIZE_M"]
                    if g != config["GROUP_SIZE_M"]]
        return [c for c in variants if self.contains(c) and self.violation(c) is None]

    def contains(self, config: Mapping[str, int]) -> bool:
        try:
            self.encode(config)
        except ValueError:
            return False
        return True

    def suggest(self, trial) -> Config:
        """Ask an Optuna trial for one index per ladder (define-by-run)."""
        return self.decode({k: trial.suggest_int(k, 0, len(v) - 1) for k, v in self.params.items()})

    def distributions(self):
        import optuna

        return {k: optuna.distributions.IntDistribution(0, len(v) - 1)
                for k, v in self.params.items()}

    @staticmethod
    def key(config: Mapping[str, int]) -> tuple:
        return tuple(sorted((k, int(v)) for k, v in config.items()))

    def fingerprint(self) -> str:
        """Short hash of everything that defines the space (part of study names)."""
        spec = {"params": self.params, "constraints": self.constraints}
        if self.context.resources is not None:  # a compiled table decides shared memory
            spec["resources"] = f"{self.context.resources.name}@{self.context.resources.triton_version}"
        blob = json.dumps(spec, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:8]
