"""Stopping rules other than patience, judged offline as every search change is (CPU).

Runs `python -m autotune.evaluate`'s evaluation with BucketTuner's stop check extended by one of:

- `--gain G`: stop once the prior_gp model expects no unmeasured config to beat the best measured
  one by G or more (its largest expected improvement, in log time: 0.001 is about 0.1%);
- `--adaptive LO,R`: stop after max(LO, R x the measurements it took to reach the best) without
  a 0.5% gain, never later than the configured patience.

Both act, like patience, only once the warm starts and the best config's GROUP_SIZE_M variants are
measured. The rules live here, not in the tuner: on the recorded tables neither saved
measurements without missing the best (benchmarks/speed/README.md, "Stopping earlier").

    python benchmarks/speed/stopping_rules.py --gain 0.001 -- TABLES --neighbours below \
        --budget 32 --patience 16 --full-runs --noise-cv 0.003 --repeats 10 --quiet
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from autotune.evaluate import cli, core  # noqa: E402
from autotune.problem.space import SearchSpace  # noqa: E402
from autotune.study import tuner  # noqa: E402
from autotune.study.records import StopReason  # noqa: E402


def expected_gain(sampler, records) -> float:
    """The prior_gp model's largest expected improvement over the best measured time, among the
    configs not measured yet, in log time."""
    rows, values = [], []
    free = np.ones(len(sampler.configs), bool)
    for r in records:
        row = sampler._row.get(SearchSpace.key(r.config))
        if row is None or not free[row]:
            continue
        free[row] = False
        if r.candidate:
            rows.append(row)
            values.append(math.log(r.us))
    if not rows or not free.any():
        return math.inf if not rows else 0.0
    y = np.array(values)
    scale = y.std() if len(y) > 1 and y.std() > 0 else 1.0
    return float(sampler._acquisition(np.array(rows, int), y)[free].max() * scale)


def rule_tuner(gain: float | None, adaptive: tuple[int, float] | None):
    class RuleTuner(tuner.BucketTuner):
        def _look(self):
            stop = super()._look()
            if stop is not None or self.exhaustive:
                return stop
            if self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                return None  # warm starts still queued
            records = tuner.read_records(self.study)
            if gain is not None and expected_gain(self.study.sampler, records) < gain:
                return None if self._polish(records) else StopReason.PATIENCE
            if adaptive is not None:
                since = tuner._since_improvement(records)
                lo, r = adaptive
                if since >= max(lo, min(self.patience or 10**9, int(r * (len(records) - since)))):
                    return None if self._polish(records) else StopReason.PATIENCE
            return None
    return RuleTuner


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gain", type=float, default=None)
    ap.add_argument("--adaptive", default=None, help="LO,R")
    ap.add_argument("evaluate_args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    adaptive = None
    if args.adaptive:
        lo, r = args.adaptive.split(",")
        adaptive = (int(lo), float(r))
    core.BucketTuner = rule_tuner(args.gain, adaptive)
    rest = args.evaluate_args[1:] if args.evaluate_args[:1] == ["--"] else args.evaluate_args
    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main())
