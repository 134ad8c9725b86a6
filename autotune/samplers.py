"""Sampler and pruner factories: every setting pinned from config.

Samplers are not stored with a study, and Optuna 5 changed TPE's defaults, so nothing here relies
on a library default. Configs excluded by the search space's constraints, and configs that failed
to run, carry a violated constraint (`Trial.set_constraint`, Optuna 5), so TPE and GP learn to
avoid their region instead of proposing them again.
"""

from __future__ import annotations

from typing import Optional

import optuna

from autotune.config import PrunerConfig, SamplerConfig
from autotune.errors import UserError

SAMPLERS = ("tpe", "gp", "random", "grid")
PRUNERS = ("none", "median", "wilcoxon")

# The constraint every told trial carries: 1.0 when the config cannot run (infeasible).
FEASIBILITY = "infeasible"


def make_sampler(cfg: SamplerConfig, seed: Optional[int] = None) -> optuna.samplers.BaseSampler:
    seed = cfg.seed if cfg.seed is not None else seed
    if cfg.name == "tpe":
        return optuna.samplers.TPESampler(
            n_startup_trials=cfg.n_startup_trials, n_ei_candidates=cfg.n_ei_candidates,
            multivariate=cfg.multivariate, group=cfg.group, constant_liar=cfg.constant_liar,
            seed=seed,
        )
    if cfg.name == "gp":
        return optuna.samplers.GPSampler(
            seed=seed, n_startup_trials=cfg.n_startup_trials,
        )
    if cfg.name in ("random", "grid"):
        # grid: the study enqueues every config in order; the sampler never chooses.
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"sampler.name={cfg.name}: use one of {', '.join(SAMPLERS)}")


def make_pruner(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    if cfg.name == "none":
        return optuna.pruners.NopPruner()
    if cfg.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.n_startup_trials)
    if cfg.name == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(p_threshold=cfg.p_threshold)
    raise UserError(f"pruner.name={cfg.name}: use one of {', '.join(PRUNERS)}")
