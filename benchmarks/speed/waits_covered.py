"""Which of a tune's compile waits the compile-ahead lists of 2026-12-07 (session 11) would have
covered, read from its storage (CPU, after the run).

A trial "waited" when it took more than --wait seconds over its bucket's median trial (the
difference is its wait: the GPU idle while the config compiled). For each such trial after the
run's first, this says whether the config would now have been handed to the compile pool earlier,
and how much earlier (the lead, the wall time from then to the trial's start):
- forecast: a GP proposal that was among the 16 configs the GP ranked next at one or more
  proposals before it in a row (the sampler is replayed on the stored trials, with the run's
  prior and settings); the lead runs from the earliest of those proposals;
- ahead: a warm start that was among the previous bucket's warm starts or its two best configs,
  compiled now for the next bucket from the previous bucket's start or its search's end.
The saving of a trial is its wait, at most its lead (a compile takes about a second, and the
pool's spare workers are assumed free: an estimate, not a measurement).

    python benchmarks/speed/waits_covered.py \
        benchmarks/speed/h100/session10/qwen3_bf16_t1/studies.db
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from autotune.evaluate.core import _search_space_config, _shared_memory  # noqa: E402
from autotune.problem.shape import MoEShape  # noqa: E402
from autotune.problem.space import SearchSpace  # noqa: E402
from autotune.search.prior import PriorWeights, bucket_prior, load_prior_sources  # noqa: E402
from autotune.search.prior_gp import FORECAST, PriorGPSampler  # noqa: E402
from autotune.study.records import StudyAttr  # noqa: E402

WARM = ("neighbour", "vllm_default", "compared", "file", "prior")  # a bucket's first trials


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("storage", help="a tune's SQLite file")
    ap.add_argument("--wait", type=float, default=0.4,
                    help="a trial this much over its bucket's median waited (s)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{args.storage}")
    studies = sorted((optuna.load_study(study_name=s.study_name, storage=storage)
                      for s in optuna.get_all_study_summaries(storage)),
                     key=lambda s: s.user_attrs.get(StudyAttr.M, 0))
    a = studies[0].user_attrs
    s = a[StudyAttr.SHAPE]
    shape = MoEShape(E=s["E"], N=s["N"], K=s["K"], topk=s["topk"], dtype=s["dtype"],
                     block_shape=tuple(s["block_shape"]) if s["block_shape"] else None)
    device = a[StudyAttr.DEVICE]
    space = SearchSpace.from_config(_search_space_config(a[StudyAttr.SEARCH_SPACE]["name"]),
                                    shape, _shared_memory(device))
    files = load_prior_sources(None, "both")
    totals = {"waits": 0.0, "forecast": 0.0, "ahead": 0.0, "first trial": 0.0}
    rows = []
    previous = None  # the bucket before: (warm start keys, best two, first start, search end)
    run_start = min(t.datetime_start for t in studies[0].trials if t.datetime_start)
    for study in studies:
        M = study.user_attrs[StudyAttr.M]
        trials = [t for t in study.get_trials(deepcopy=False)
                  if t.datetime_start and t.datetime_complete and t.user_attrs.get("measured")]
        took = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
        typical = statistics.median(took)
        leads = _forecast_leads(space, bucket_prior(space, device, M, files=files,
                                                    weights=PriorWeights(table=16.0)), trials)
        warm = {SearchSpace.key(t.user_attrs["config"]) for t in trials
                if str(t.user_attrs.get("source", "")).startswith(WARM)}
        best = [SearchSpace.key(t.user_attrs["config"]) for t in
                sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value < 1e30),
                       key=lambda t: t.value)[:2]]
        for i, (t, seconds) in enumerate(zip(trials, took)):
            wait = seconds - typical
            if wait <= args.wait:
                continue
            totals["waits"] += wait
            if t.datetime_start == run_start:
                totals["first trial"] += wait
                rows.append((M, t.number, wait, "first trial of the run", 0.0))
                continue
            key = SearchSpace.key(t.user_attrs["config"])
            how, lead = "not listed ahead", 0.0
            if i in leads:
                since = trials[leads[i]].datetime_start
                how, lead = "forecast", (t.datetime_start - since).total_seconds()
            elif previous and key in previous[0] | set(previous[1]):
                since = previous[2] if key in previous[0] else previous[3]
                how, lead = "ahead", (t.datetime_start - since).total_seconds()
            if how != "not listed ahead":
                totals[how] += min(wait, lead)
            rows.append((M, t.number, wait, how, lead))
        previous = (warm, best, min(t.datetime_start for t in trials),
                    max(t.datetime_complete for t in trials))
    print("| M | trial | wait s | listed ahead | lead s |")
    print("|---:|---:|---:|---|---:|")
    for M, number, wait, how, lead in rows:
        print(f"| {M} | {number} | {wait:.2f} | {how} | {lead:.2f} |")
    print(f"\nwaits {totals['waits']:.1f} s, of which the run's first trial "
          f"{totals['first trial']:.1f} s; covered (up to the lead): forecast "
          f"{totals['forecast']:.1f} s, ahead {totals['ahead']:.1f} s")


def _forecast_leads(space: SearchSpace, prior, trials) -> dict[int, int]:
    """For each GP proposal (by position) that was in the GP's forecast at the proposals before
    it, in a row: the position of the earliest of them."""
    sampler = PriorGPSampler(space, prior, step_correlation=0.3, group_correlation=0.8,
                             prior_weight=0.5)
    forecasts: list[tuple[int, set]] = []  # (position, forecast keys) at each GP proposal
    out = {}
    for i, t in enumerate(trials):
        key = SearchSpace.key(t.user_attrs["config"])
        if t.user_attrs.get("source", "sampler") != "sampler":
            continue
        earliest = None
        for position, keys in reversed(forecasts):
            if key not in keys:
                break
            earliest = position
        if earliest is not None:
            out[i] = earliest
        # The forecast made with this proposal: the GP over the trials measured before it.
        before = trials[:i]
        measured = [(sampler._row[SearchSpace.key(b.user_attrs["config"])], b.value) for b in before
                     if b.state == TrialState.COMPLETE and b.value is not None and b.value < 1e30
                     and SearchSpace.key(b.user_attrs["config"]) in sampler._row]
        free = np.ones(len(sampler.configs), bool)
        for b in before + [t]:
            row = sampler._row.get(SearchSpace.key(b.user_attrs["config"]))
            if row is not None:
                free[row] = False
        score = sampler._acquisition(np.array([r for r, _ in measured], int),
                                     np.log(np.array([v for _, v in measured], float)))
        score = np.where(free, score, -np.inf)
        ranked = [int(r) for r in np.argsort(-score, kind="stable")[:FORECAST] if free[r]]
        forecasts.append((i, {SearchSpace.key(sampler.configs[r]) for r in ranked}))
    return out


if __name__ == "__main__":
    main()
