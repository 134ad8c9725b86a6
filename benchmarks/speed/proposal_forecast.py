"""How often the GP's next proposal was among the configs the compile pool could have had ready:
the prior's top 128 (what the pool speculates on) or the GP's own likeliest next proposals (CPU).

Runs the offline evaluation (`python -m autotune.evaluate` arguments) with the prior_gp sampler
recording, at every proposal after the first of a bucket, whether the config it chose was in the
prior's top 128 of the bucket, or among the 8 or 16 configs its acquisition ranked next at the
proposal before, and for how many proposals before it had been among those 16 (its lead).

    python benchmarks/speed/proposal_forecast.py TABLES --neighbours below --budget 32 \
        --patience 16 --full-runs --noise-cv 0.003 --repeats 2 --quiet
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from autotune.evaluate import cli  # noqa: E402
from autotune.search.prior_gp import PriorGPSampler  # noqa: E402

COUNTS = {"proposals": 0, "prior top 128": 0, "GP next 8": 0, "GP next 16": 0}
# Proposals by lead: for how many proposals in a row before it the config was already among the
# GP's 16 likeliest next ones (5: five or more).
LEAD = [0] * 6


class Forecasting(PriorGPSampler):
    def __init__(self, space, prior=None, **kwargs):
        super().__init__(space, prior, **kwargs)
        ranked = np.argsort(-np.asarray(prior)) if prior is not None else []
        self.prior_top = {int(i) for i in ranked[:128]}
        self.next: list[int] = []
        self.forecasts: list[set[int]] = []

    def sample_relative(self, study, trial, search_space):
        taken, rows, values = self._observations(study, trial)
        free = np.ones(len(self.configs), bool)
        free[list(taken)] = False
        score = np.where(free, self._acquisition(np.array(rows, int), np.array(values)), -np.inf)
        choice = int(np.argmax(score))
        if self.next:
            COUNTS["proposals"] += 1
            COUNTS["prior top 128"] += choice in self.prior_top
            COUNTS["GP next 8"] += choice in self.next[:8]
            COUNTS["GP next 16"] += choice in self.next[:16]
            lead = 0
            while lead < len(self.forecasts) and choice in self.forecasts[-1 - lead]:
                lead += 1
            LEAD[min(lead, 5)] += 1
        self.next = [int(i) for i in np.argsort(-score)[1:17]]
        self.forecasts.append(set(self.next))
        return self.space.encode(self.configs[choice])


def main() -> int:
    import autotune.search.prior_gp as prior_gp

    prior_gp.PriorGPSampler = Forecasting  # what make_sampler builds
    rc = cli.main(sys.argv[1:])
    n = COUNTS.pop("proposals")
    print(f"{n} proposals: " + ", ".join(f"{k} {v / n:.1%}" for k, v in COUNTS.items()))
    print("among the GP's 16 likeliest next, for this many proposals in a row before: "
          + ", ".join(f"{k}{'+' if k == 5 else ''} {v / n:.1%}" for k, v in enumerate(LEAD)))
    return rc


if __name__ == "__main__":
    sys.exit(main())
