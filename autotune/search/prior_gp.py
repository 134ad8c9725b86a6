"""PriorGPSampler: Gaussian-process expected improvement over every config of the space.

The constrained space is small (about a thousand configs), so the acquisition is computed for all
of it instead of being optimized over a continuous relaxation: the sampler never proposes a config
the constraints exclude or one already measured, and each proposal costs about a millisecond.

Model: log time, standardized, is a GP over ladder indices with a product of exponential kernels,
corr = step_correlation ** |index steps| per parameter (GROUP_SIZE_M, which matters little, uses
group_correlation). Its mean is the prior learned from vLLM's shipped files and recorded tables
of other GPUs and shapes (autotune/search/prior.py): a config the prior favours is expected
`prior_weight` standard deviations faster than one it does not. With no measurement yet it
proposes the prior's favourite.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from autotune.problem.space import SearchSpace
from autotune.search.prior import space_index

# Measurement noise of log time, relative to the spread of the measured configs' log times.
NOISE_VARIANCE = 1e-3
# Configs ranked next after each proposal, kept as its forecast: offline (the 14 recorded tables),
# 98.7% of proposals were among the 16 ranked next one proposal before, 62% three or more before
# (benchmarks/speed/proposal_forecast.py).
FORECAST = 16


class PriorGPSampler(optuna.samplers.BaseSampler):
    def __init__(self, space: SearchSpace, prior: Optional[Sequence[float]] = None, *,
                 seed: Optional[int] = None, n_startup_trials: int = 0,
                 step_correlation: float = 0.3, group_correlation: float = 0.8,
                 prior_weight: float = 1.5) -> None:
        for name, rho in (("step_correlation", step_correlation),
                          ("group_correlation", group_correlation)):
            if not 0 < rho < 1:
                raise ValueError(f"{name}={rho}: must be between 0 and 1")
        self.space = space
        self.configs = list(space.configs())
        self.index = space_index(space, self.configs)
        self._row = {SearchSpace.key(c): i for i, c in enumerate(self.configs)}
        self.n_startup_trials = n_startup_trials
        self.prior_weight = prior_weight
        self._log_corr = np.array([math.log(group_correlation if k == "GROUP_SIZE_M"
                                            else step_correlation) for k in space.params])
        self._prior_mean = np.zeros(len(self.configs))
        if prior is not None:
            log_p = np.log(np.maximum(np.asarray(prior, float), 1e-300))
            spread = log_p.std()
            if spread > 0:
                self._prior_mean = -(log_p - log_p.mean()) / spread  # favoured: lower (faster)
        self._rng = np.random.default_rng(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        # The configs ranked next after the last proposal, likeliest first (compiled ahead).
        self.forecast: list[dict[str, int]] = []

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.space.distributions()

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        taken, rows, values = self._observations(study, trial)
        free = np.ones(len(self.configs), bool)
        free[list(taken)] = False
        if not free.any():
            return {}
        if len(rows) < self.n_startup_trials:
            choice = self._rng.choice(np.flatnonzero(free))
        else:
            score = self._acquisition(np.array(rows, int), np.array(values))
            score = np.where(free, score, -np.inf)
            best = np.flatnonzero(score >= score.max() - 1e-12)
            choice = self._rng.choice(best)
            free[choice] = False
            ranked = np.argsort(-score, kind="stable")[:FORECAST + 1]
            self.forecast = [self.configs[i] for i in ranked if free[i]][:FORECAST]
        return self.space.encode(self.configs[int(choice)])

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    # -- model -------------------------------------------------------------------------------------
    def _observations(self, study: optuna.Study,
                      trial: FrozenTrial) -> tuple[set[int], list[int], list[float]]:
        """Rows already taken (measured, pending), and the measured ones' log times."""
        taken: set[int] = set()
        rows, values = [], []
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
        for t in study.get_trials(deepcopy=False, states=states):
            config = self.space.trial_config(t)
            if t.number == trial.number or config is None:
                continue
            row = self._row.get(SearchSpace.key(config))
            if row is None or row in taken:
                continue  # excluded by the constraints, or a duplicate
            taken.add(row)
            value = _observed(t)
            if value is not None:
                rows.append(row)
                values.append(math.log(value))
        return taken, rows, values

    def _acquisition(self, rows: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Expected improvement of every config (its prior mean alone when nothing is measured)."""
        mean0 = self.prior_weight * self._prior_mean
        if len(rows) == 0:
            return -mean0
        scale = y.std() if len(y) > 1 and y.std() > 0 else 1.0
        z = (y - y.mean()) / scale
        X = self.index[rows]
        K = self._kernel(X, X) + NOISE_VARIANCE * np.eye(len(rows))
        Ks = self._kernel(self.index, X)
        L = np.linalg.cholesky(K)
        alpha = np.linalg.solve(L.T, np.linalg.solve(L, z - mean0[rows]))
        mu = mean0 + Ks @ alpha
        v = np.linalg.solve(L, Ks.T)
        sigma = np.sqrt(np.maximum(1.0 - (v * v).sum(axis=0), 1e-12))
        gap = z.min() - mu
        u = gap / sigma
        return gap * _norm_cdf(u) + sigma * _norm_pdf(u)

    def _kernel(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        return np.exp((np.abs(A[:, None, :] - B[None, :, :]) * self._log_corr).sum(axis=2))


def _observed(t: FrozenTrial) -> Optional[float]:
    """The trial's time: a full measurement, or a pruned trial's first look; None otherwise."""
    if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value):
        return t.value
    if t.state == TrialState.PRUNED and t.intermediate_values:
        return t.intermediate_values[max(t.intermediate_values)]
    return None


def _norm_pdf(u: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)


_erf = np.vectorize(math.erf, otypes=[float])


def _norm_cdf(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(u / math.sqrt(2.0)))
