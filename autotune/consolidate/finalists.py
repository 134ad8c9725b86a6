"""From studies to file entries: finalists re-timed against vLLM's default, a correctness gate, and
a check of the batch sizes between buckets.

A study times each config once, and the fastest of many single noisy timings is biased low (the
winner's curse). So the best few trials of a bucket are timed again, in interleaved rounds, together
with vLLM's default config and, when the user names an existing file, the entry vLLM would take
from it; the fastest that passes the benchmarker's correctness check becomes the bucket's entry
(a smaller GROUP_SIZE_M within the fastest's spread is taken instead: see ties.py).
vLLM's default competes too: when no tuned config beats it, the default is the honest entry. An
entry the kernel would rewrite at run time (BLOCK_SIZE_K above the quantization block) is never
chosen.

Results are stored in the bucket's study (user attributes), so the report is made from the storage
alone, and a rerun does not time again what it has already timed.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Optional, Sequence

import optuna

from autotune import wall_clock
from autotune.bench.protocol import Benchmarker
from autotune.consolidate.compare import Comparison
from autotune.consolidate.retime import retime, unique_configs
from autotune.consolidate.ties import writing_order
from autotune.files.check import check_entry
from autotune.problem import vllm_rules
from autotune.problem.shape import MoEShape
from autotune.problem.space import Config, SearchSpace
from autotune.study.records import Record, StudyAttr, read_records

log = logging.getLogger(__name__)


@dataclass
class Consolidation:
    """A bucket's entry and everything learnt choosing it, as stored in its study (a plain dict
    there: StudyAttr.CONSOLIDATION)."""

    inputs: dict[str, Any]  # what it was made from: a later lookup reuses it only for the same
    M: int
    measured: int  # trials in the study when this was made
    rounds: int
    entry: Optional[dict[str, Any]]  # the candidate written (None: none ran and passed)
    candidates: list[dict[str, Any]]  # each with source, trial, config, us, spread, verified
    default: dict[str, Any]  # vLLM's default config and its re-timing
    file: Optional[dict[str, Any]]  # the compared file's entry and its re-timing (compare_with=)
    skipped: list[Any]  # first-pass best configs not re-timed, and why
    first_pass_drift: float
    seconds: float

    @classmethod
    def stored(cls, study: optuna.Study) -> Optional["Consolidation"]:
        data = study.user_attrs.get(StudyAttr.CONSOLIDATION)
        return cls(**{f.name: data.get(f.name) for f in fields(cls)}) if data else None

    def store(self, study: optuna.Study) -> None:
        study.set_user_attr(StudyAttr.CONSOLIDATION, asdict(self))


# First passes this close to the best one (or within twice its spread) are ties: those configs
# are re-timed as finalists too.
FINALIST_TIE = 0.01
# With drift detected, the widened tie band may bring in up to this many times the asked number.
WIDENED_MOST = 4


# -- one bucket ------------------------------------------------------------------------------------
def pick_finalists(records: Iterable[Record], M: int, block_shape: Optional[tuple[int, int]],
                   n: int, tie: float = FINALIST_TIE, most: Optional[int] = None
                   ) -> tuple[list[Record], list[dict]]:
    """The n fastest measured configs the kernel runs exactly as written, and any others whose
    first pass ties with the fastest's (up to `most`, 2n unless given, in all); also the faster
    ones passed over because the kernel would rewrite or refuse them.

    Ties join because a single first pass cannot order them: at decode sizes many configs lie
    within 1% of each other, and the one that wins the re-timing is not always among the n with
    the luckiest first pass.
    """
    chosen: list[Record] = []
    skipped: list[dict] = []
    full = (r for r in records if r.candidate)  # pruned first looks are not finalists
    for r in sorted(full, key=lambda r: r.us):  # type: ignore[arg-type]
        ties = chosen and r.us <= chosen[0].us * (1 + max(tie, 2 * chosen[0].spread))
        if len(chosen) >= (most or 2 * n) or (len(chosen) >= n and not ties):
            break
        findings = check_entry(str(M), vllm_rules.kernel_config(r.config), block_shape)
        if findings:
            skipped.append({"trial": r.number, "config": r.config, "us": r.us,
                            "reason": findings[0].message})
        else:
            chosen.append(r)
    return chosen, skipped


def consolidate_bucket(study: optuna.Study, M: int, shape: MoEShape, space: SearchSpace,
                       bench: Optional[Benchmarker], *, finalists: int, rounds: int,
                       comparison: Optional[Comparison]) -> Optional[Consolidation]:
    """The bucket's entry and everything learnt choosing it, stored in the study.

    bench=None only looks the result up: the stored one if it was made from the same finalists,
    default and file entry; else None (nothing is measured).
    """
    records = read_records(study)
    chosen, skipped = pick_finalists(records, M, shape.block_shape, finalists)
    default = vllm_rules.default_config(M, shape.E, shape.dtype, shape.block_shape)
    file_entry = comparison.entry_for(M, shape.block_shape) if comparison else None
    inputs = {"finalists": [[r.number, r.config] for r in chosen], "default": default,
              "file": file_entry, "rounds": rounds}
    stored = Consolidation.stored(study)
    if stored and stored.inputs == inputs:
        return stored
    if bench is None:
        return None

    start = time.perf_counter()
    baselines = [default] + ([file_entry["runs_as"]] if file_entry else [])
    with wall_clock.phase("re-timing"):
        chosen, variants, timed, drift = _retime_finalists(
            bench, records, chosen, baselines, M, shape.block_shape, space, finalists, rounds)
    timing = lambda config: timed[SearchSpace.key(config)]  # noqa: E731

    # Candidates for the entry: the finalists, and vLLM's default when the kernel runs it as is.
    candidates = [{"source": "tuned", "trial": r.number, "config": r.config,
                   "first_pass_us": r.us} for r in chosen]
    candidates += [{"source": "group_variant", "trial": None, "config": c, "first_pass_us": None}
                   for c in variants]
    if not check_entry(str(M), default, shape.block_shape):
        if not any(SearchSpace.key(vllm_rules.kernel_config(c["config"])) == SearchSpace.key(default)
                   for c in candidates):
            study_default = next((r for r in records if r.candidate and SearchSpace.key(
                vllm_rules.kernel_config(r.config)) == SearchSpace.key(default)), None)
            candidates.append({"source": "vllm_default", "config": default,
                               "trial": study_default and study_default.number,
                               "first_pass_us": study_default and study_default.us})
    for c in candidates:
        c.update(timing(c["config"]))
        if SearchSpace.key(vllm_rules.kernel_config(c["config"])) == SearchSpace.key(default):
            c["source"] = "vllm_default"
    with wall_clock.phase("correctness"):
        entry = _first_correct(bench, candidates, M)

    result = Consolidation(
        inputs=inputs, M=M, measured=len(records), rounds=rounds, entry=entry,
        candidates=candidates, default={"config": default, **timing(default)},
        file={**file_entry, **timing(file_entry["runs_as"])} if file_entry else None,
        skipped=skipped, first_pass_drift=drift, seconds=time.perf_counter() - start)
    result.store(study)
    if entry is not None:
        _log_bucket(result)  # once, when settled (a later lookup returns the stored result)
    return result


def _first_correct(bench: Benchmarker, candidates: list[dict], M: int) -> Optional[dict]:
    """The first re-timed candidate in writing order (the fastest, or a smaller GROUP_SIZE_M
    within its spread) whose outputs the benchmarker finds right."""
    for c in writing_order(candidates):
        c["verified"] = bench.verify(c["config"], M)
        if c["verified"] is not False:
            return c
        log.warning("M=%d: %s gave wrong results; not written", M, c["config"])
    return None


def _retime_finalists(bench: Benchmarker, records: list[Record], chosen: list[Record],
                      baselines: list[Config], M: int, block_shape: Optional[tuple[int, int]],
                      space: SearchSpace, n: int, rounds: int
                      ) -> tuple[list[Record], list[Config], dict[tuple, dict], float]:
    """Re-time the finalists with the baselines; if their re-timings show that their first passes
    read fast (the first measurements of a process did, by up to 9% on an H200), pick the
    finalists again with the tie band widened by that drift, add the unmeasured GROUP_SIZE_M
    variants of the fastest re-timed one, and re-time those too.

    The variants, because the search's polish measured those of the fastest first pass, which the
    drift may have misplaced: on an H200 (qwen3-30B bf16 M=1) a tune's trials 0-2 and 8 read 6%
    fast, its polish went to trial 8's tile, and GROUP_SIZE_M=1 of the tile that re-timed fastest,
    2% faster than the entry it wrote, was never measured.

    Configs added after the first re-timing are timed against the fastest one so far
    (`_retime_against`), not with everything again: at large M on an H200 every finalist drifts
    by 1-4%, and re-timing the whole set twice more was most of a bucket's consolidation.

    Returns the finalists, the variants re-timed with them, the timings by config key, and the
    drift (median re-timed over first pass of the first finalists; 1.0 when none compared).
    """
    tuned = [r.config for r in chosen]
    timed = _retimed(bench, tuned + baselines, M, rounds, contenders=tuned)
    us = lambda config: timed[SearchSpace.key(config)]["us"]  # noqa: E731
    ratios = [us(r.config) / r.us for r in chosen if us(r.config) and r.us]
    drift = statistics.median(ratios) if ratios else 1.0
    if drift <= 1 + FINALIST_TIE:
        return chosen, [], timed, drift
    # Up to 4n: on an H200 the first three trials of a process read 8.7% fast (qwen3-30B fp8
    # M=1), which puts five configs between them and the best config measured after them.
    wider, _ = pick_finalists(records, M, block_shape, n,
                              tie=drift - 1 + FINALIST_TIE, most=WIDENED_MOST * n)
    added = [r.config for r in wider if SearchSpace.key(r.config) not in timed]
    if added:
        log.info("M=%d: finalists re-timed %.1f%% slower than their first passes; re-timing %d "
                 "more within that band", M, 100 * (drift - 1), len(added))
        timed.update(_retime_against(bench, added, _fastest(chosen, timed), timed, M, rounds,
                                     contend=True))
        chosen = wider  # the first finalists are among them: the band only grew
    fastest = _fastest(chosen, timed)
    measured = {SearchSpace.key(r.config) for r in records}
    variants = [c for c in (space.group_variants(fastest) if fastest else [])
                if SearchSpace.key(c) not in measured
                and not check_entry(str(M), vllm_rules.kernel_config(c), block_shape)]
    if variants:
        timed.update(_retime_against(bench, variants, fastest, timed, M, rounds))
    return chosen, variants, timed, drift


def _retimed(bench: Benchmarker, configs: list[Config], M: int, rounds: int,
             contenders: Sequence[Config] = ()) -> dict[tuple, dict]:
    """Each config once, re-timed in interleaved rounds: its timing by config key. The
    `contenders` stop once beaten, but one that is also a baseline or the anchor gets every
    round."""
    unique = unique_configs(configs)
    keys = [SearchSpace.key(c) for c in unique]
    others = {SearchSpace.key(c) for c in configs if c not in contenders}
    racing = {SearchSpace.key(c) for c in contenders} - others
    return dict(zip(keys, retime(bench, unique, M, rounds,
                                 contenders=[i for i, k in enumerate(keys) if k in racing])))


def _fastest(chosen: list[Record], timed: dict[tuple, dict]) -> Optional[Config]:
    """The finalist that re-timed fastest (None when none ran)."""
    ran = [r.config for r in chosen if timed[SearchSpace.key(r.config)]["us"]]
    return min(ran, key=lambda c: timed[SearchSpace.key(c)]["us"], default=None)


def _retime_against(bench: Benchmarker, configs: list[Config], anchor: Optional[Config],
                    timed: dict[tuple, dict], M: int, rounds: int,
                    contend: bool = False) -> dict[tuple, dict]:
    """Re-time configs interleaved with an anchor re-timed before, and put their times on that
    earlier pass's scale (times the anchor's earlier median over its median now). With
    `contend` (tuned finalists), a config stops once beaten; the anchor gets every round.

    Interleaving measures the ratio to the anchor well; the scale itself drifts from one pass to
    the next (the GPU's clocks and temperature), and the new configs are compared with the
    earlier pass's."""
    fresh = _retimed(bench, configs + ([anchor] if anchor else []), M, rounds,
                     contenders=configs if contend else [])
    before = timed[SearchSpace.key(anchor)]["us"] if anchor else None
    now = fresh[SearchSpace.key(anchor)]["us"] if anchor else None
    scale = before / now if before and now else 1.0
    out = {}
    for config in configs:
        t = fresh[SearchSpace.key(config)]
        if t["us"] is not None:
            t = {**t, "us": t["us"] * scale, "samples": [x * scale for x in t["samples"]]}
        out[SearchSpace.key(config)] = t
    return out


def _log_bucket(result: Consolidation) -> None:
    e, d = result.entry, result.default
    vs = f"; vLLM default {d['us']:.2f} us" if d["us"] is not None else ""
    log.info("M=%d: entry %.2f us (%s, re-timed)%s", result.M, e["us"], e["source"], vs)
