"""Sampler and pruner factories: every setting pinned from config.

Samplers are not stored with a study, and Optuna 5 changed TPE's defaults, so nothing here relies
on a library default. Configs excluded by the search space's constraints, and configs that failed
to run, carry a violated constraint (`Trial.set_constraint`, Optuna 5), so TPE and GP learn to
avoid their region instead of proposing them again.
"""

from __future__ import annotations

from typing import Optional, Sequence

import optuna

from autotune.config import PrunerConfig, SamplerConfig
from autotune.errors import UserError
from autotune.problem.space import SearchSpace

SAMPLERS = ("tpe", "gp", "prior_gp", "random", "grid")
# A trial here is one measurement, so the only pruning that saves GPU time is a cheap first look
# compared with the incumbent ("screen"); Optuna's median or Wilcoxon pruners need many steps.
PRUNERS = ("none", "screen")

def make_sampler(cfg: SamplerConfig, seed: Optional[int] = None,
                 space: Optional[SearchSpace] = None,
                 prior: Optional[Sequence[float]] = None) -> optuna.samplers.BaseSampler:
    """The configured sampler; prior_gp also needs the space and the prior of the bucket.

    prior: the prior density of each config of space.configs() (autotune.search.prior.prior_scores).
    """
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
    if cfg.name == "prior_gp":
        from autotune.search.prior_gp import PriorGPSampler

        if space is None:
            raise ValueError("sampler prior_gp needs the search space")
        for key in ("step_correlation", "group_correlation"):
            if not 0 < getattr(cfg, key) < 1:
                raise UserError(f"sampler.{key}={getattr(cfg, key)}: give a correlation "
                                f"between 0 and 1 (exclusive)")
        return PriorGPSampler(space, prior, seed=seed, n_startup_trials=cfg.n_startup_trials,
                              step_correlation=cfg.step_correlation,
                              group_correlation=cfg.group_correlation,
                              prior_weight=cfg.prior_weight)
    if cfg.name in ("random", "grid"):
        # grid: the study enqueues every config in order; the sampler never chooses.
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"sampler.name={cfg.name}: use one of {', '.join(SAMPLERS)}")


def make_pruner(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    if cfg.name == "none":
        return optuna.pruners.NopPruner()
    if cfg.name == "screen":
        return IncumbentPruner(margin=cfg.margin)
    raise UserError(f"pruner.name={cfg.name}: use one of {', '.join(PRUNERS)}")


class IncumbentPruner(optuna.pruners.BasePruner):
    """Prune a trial whose first look is more than `margin` slower than the best full measurement.

    The margin must exceed the first look's noise (a few replays: several percent), or a winner
    could be pruned on one unlucky look.
    """

    def __init__(self, margin: float) -> None:
        if not margin > 0:
            raise UserError(f"pruner.margin={margin}: give a positive fraction, e.g. 0.15")
        self.margin = margin

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        try:
            best = study.best_value  # feasible, fully measured trials only
        except ValueError:
            return False
        return trial.intermediate_values[step] > best * (1 + self.margin)
