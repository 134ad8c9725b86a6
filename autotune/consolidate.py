"""From studies to file entries: finalists re-timed against vLLM's default, a correctness gate, and
a check of the batch sizes between buckets.

A study times each config once, and the fastest of many single noisy timings is biased low (the
winner's curse). So the best few trials of a bucket are timed again, in interleaved rounds, together
with vLLM's default config and, when the user names an existing file, the entry vLLM would take
from it; the fastest that passes the benchmarker's correctness check becomes the bucket's entry.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import optuna

from autotune import vllm_rules
from autotune.bench.protocol import Benchmarker
from autotune.errors import UserError
from autotune.formats import (
    check_entry,
    check_file,
    config_file_name,
    dtype_token,
    parse_file_name,
    read_entries,
)
from autotune.shape import MoEShape
from autotune.space import KERNEL_PARAMS, Config, SearchSpace
from autotune.study import Record, read_records

log = logging.getLogger(__name__)

# Study user attributes written here (and read by the report).
CONSOLIDATION = "consolidation"
MIDPOINT = "midpoint"

# First passes this close to the best one (or within twice its spread) are ties: those configs
# are re-timed as finalists too.
FINALIST_TIE = 0.01

# A neighbour's config must beat the served one by more than this (or the timings' spread) to be
# reported as better at a midpoint.
MIN_GAIN = 0.01


@dataclass(frozen=True)
class Comparison:
    """An existing vLLM config file that the tuned entries are compared with."""

    path: Path
    entries: dict[int, Config]

    def entry_for(self, M: int, block_shape: Optional[tuple[int, int]]) -> dict[str, Any]:
        """The entry vLLM would take from this file for M tokens, and what the kernel runs."""
        key = vllm_rules.nearest_key(self.entries, M)
        config = vllm_rules.nearest_entry(self.entries, M)
        return {"file": self.path.name, "key": key, "config": config,
                "runs_as": vllm_rules.runs_as(config, block_shape)}


def load_comparison(path: str, shape: MoEShape, device_name: str) -> Comparison:
    """The file of compare_with=: a file, or a folder of them (vLLM's `configs/`, say) in which
    the file vLLM would look up for this shape and device is taken. Refused when vLLM could not
    load it or it is for another shape (a file for another GPU is allowed: the user chose it)."""
    p = Path(path).expanduser()
    if p.is_dir():
        name = config_file_name(shape.E, shape.N, device_name, shape.dtype, shape.block_shape)
        if not (p / name).is_file():
            raise UserError(f"compare_with={path}: the folder has no {name}; give the folder vLLM "
                            f"ships its configs in, or a file")
        p = p / name
    if not p.is_file():
        raise UserError(f"compare_with={path}: no such file or folder; give an existing vLLM "
                        f"config file (quote it: compare_with='\"E=...json\"') or its folder")
    errors = [f for f in check_file(p) if f.level == "error"]
    if errors:
        raise UserError(f"compare_with={path}: {errors[0]}; vLLM could not load it either")
    parsed = parse_file_name(p.name)
    assert parsed is not None  # check_file refuses names it cannot parse
    if ((parsed["E"], parsed["N"], parsed["dtype"], parsed["block_shape"])
            != (shape.E, shape.N, dtype_token(shape.dtype), shape.block_shape)):
        raise UserError(f"compare_with={p.name} is for another shape than this run's "
                        f"{shape.describe()}; give the file vLLM would load for it")
    return Comparison(p.resolve(), read_entries(p))


# -- interleaved re-timing -------------------------------------------------------------------------
def retime(bench: Benchmarker, configs: Sequence[Config], M: int, rounds: int) -> list[dict]:
    """Time each config once per round, every round starting one config later (A B C, B C A, ...)
    so that drift in clocks or temperature falls on all alike; the median per config.

    Returns per config {"us", "spread", "samples"}, or {"us": None, "reason"} when it failed.
    """
    bench.prepare(configs, M)
    n = len(configs)
    samples: list[list[float]] = [[] for _ in configs]
    failed: list[Optional[str]] = [None] * n
    for r in range(rounds):
        for i in [(r + j) % n for j in range(n)]:
            if failed[i] is None:
                m = bench.measure(configs[i], M)
                if m.ok:
                    samples[i].append(float(m.us))  # type: ignore[arg-type]
                else:
                    failed[i] = m.infeasible or "failed"
    return [_timing(s, f) for s, f in zip(samples, failed)]


def _timing(samples: list[float], reason: Optional[str]) -> dict:
    if reason is not None or not samples:
        return {"us": None, "reason": reason or "not timed"}
    median = statistics.median(samples)
    return {"us": median, "spread": (max(samples) - min(samples)) / median, "samples": samples}


# -- one bucket ------------------------------------------------------------------------------------
def pick_finalists(records: Iterable[Record], M: int, block_shape: Optional[tuple[int, int]],
                   n: int, tie: float = FINALIST_TIE) -> tuple[list[Record], list[dict]]:
    """The n fastest measured configs the kernel runs exactly as written, and any others whose
    first pass ties with the fastest's (up to 2n in all); also the faster ones passed over because
    the kernel would rewrite or refuse them.

    Ties join because a single first pass cannot order them: at decode sizes many configs lie
    within 1% of each other, and the one that wins the re-timing is not always among the n with
    the luckiest first pass.
    """
    chosen: list[Record] = []
    skipped: list[dict] = []
    full = (r for r in records if r.candidate)  # pruned first looks are not finalists
    for r in sorted(full, key=lambda r: r.us):  # type: ignore[arg-type]
        ties = chosen and r.us <= chosen[0].us * (1 + max(tie, 2 * chosen[0].spread))
        if len(chosen) >= 2 * n or (len(chosen) >= n and not ties):
            break
        findings = check_entry(str(M), _kernel_config(r.config), block_shape)
        if findings:
            skipped.append({"trial": r.number, "config": r.config, "us": r.us,
                            "reason": findings[0].message})
        else:
            chosen.append(r)
    return chosen, skipped


def _kernel_config(config: Config) -> Config:
    return {k: int(config[k]) for k in KERNEL_PARAMS}


def consolidate_bucket(study: optuna.Study, M: int, shape: MoEShape, bench: Optional[Benchmarker],
                       *, finalists: int, rounds: int,
                       comparison: Optional[Comparison]) -> Optional[dict]:
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
    stored = study.user_attrs.get(CONSOLIDATION)
    if stored and stored.get("inputs") == inputs:
        return stored
    if bench is None:
        return None

    start = time.perf_counter()
    baselines = [default] + ([file_entry["runs_as"]] if file_entry else [])
    chosen, timed, drift = _retime_finalists(bench, records, chosen, baselines, M, shape.block_shape,
                                             finalists, rounds)
    timing = lambda config: timed[SearchSpace.key(config)]  # noqa: E731

    # Candidates for the entry: the finalists, and vLLM's default when the kernel runs it as is.
    candidates = [{"source": "tuned", "trial": r.number, "config": r.config,
                   "first_pass_us": r.us} for r in chosen]
    if not check_entry(str(M), default, shape.block_shape):
        if not any(SearchSpace.key(_kernel_config(c["config"])) == SearchSpace.key(default)
                   for c in candidates):
            study_default = next((r for r in records if r.candidate and SearchSpace.key(
                _kernel_config(r.config)) == SearchSpace.key(default)), None)
            candidates.append({"source": "vllm_default", "config": default,
                               "trial": study_default and study_default.number,
                               "first_pass_us": study_default and study_default.us})
    for c in candidates:
        c.update(timing(c["config"]))
        if SearchSpace.key(_kernel_config(c["config"])) == SearchSpace.key(default):
            c["source"] = "vllm_default"
    entry = None
    for c in sorted((c for c in candidates if c["us"] is not None), key=lambda c: c["us"]):
        c["verified"] = bench.verify(c["config"], M)
        if c["verified"] is not False:
            entry = c
            break
        log.warning("M=%d: %s gave wrong results; not written", M, c["config"])

    result = {
        "inputs": inputs,
        "M": M,
        "measured": len(records),  # trials in the study when this was made
        "rounds": rounds,
        "entry": entry,
        "candidates": candidates,
        "default": {"config": default, **timing(default)},
        "file": {**file_entry, **timing(file_entry["runs_as"])} if file_entry else None,
        "skipped": skipped,
        "first_pass_drift": drift,
        "seconds": time.perf_counter() - start,
    }
    study.set_user_attr(CONSOLIDATION, result)
    if entry is not None:
        _log_bucket(result)  # once, when settled (a later lookup returns the stored result)
    return result


def _retime_finalists(bench: Benchmarker, records: list[Record], chosen: list[Record],
                      baselines: list[Config], M: int, block_shape: Optional[tuple[int, int]],
                      n: int, rounds: int) -> tuple[list[Record], dict[tuple, dict], float]:
    """Re-time the finalists with the baselines; if their re-timings show that their first passes
    read fast (the first measurements of a process did, by up to 5% on an H200), pick the
    finalists again with the tie band widened by that drift and re-time them all together.

    Returns the finalists, the timings by config key, and the drift (median re-timed over first
    pass of the first finalists; 1.0 when none could be compared).
    """
    def timings(finalists: list[Record]) -> dict[tuple, dict]:
        contenders = _unique([r.config for r in finalists] + baselines)
        return dict(zip(map(SearchSpace.key, contenders), retime(bench, contenders, M, rounds)))

    timed = timings(chosen)
    ratios = [timed[SearchSpace.key(r.config)]["us"] / r.us for r in chosen
              if timed[SearchSpace.key(r.config)]["us"] and r.us]
    drift = statistics.median(ratios) if ratios else 1.0
    if drift > 1 + FINALIST_TIE:
        wider, _ = pick_finalists(records, M, block_shape, n, tie=drift - 1 + FINALIST_TIE)
        if {r.number for r in wider} - {r.number for r in chosen}:
            log.info("M=%d: finalists re-timed %.1f%% slower than their first passes; re-timing "
                     "%d configs within that band", M, 100 * (drift - 1), len(wider))
            chosen, timed = wider, timings(wider)
    return chosen, timed, drift


def _unique(configs: Iterable[Config]) -> list[Config]:
    seen: dict[tuple, Config] = {}
    for c in configs:
        seen.setdefault(SearchSpace.key(c), c)
    return list(seen.values())


# -- between buckets -------------------------------------------------------------------------------
def check_midpoints(studies: dict[int, optuna.Study], entries: dict[int, Config],
                    bench: Optional[Benchmarker], rounds: int) -> list[dict]:
    """Time each pair of neighbouring entries at the batch size halfway between their keys.

    vLLM serves M tokens with the nearest key's entry (the smaller key on a tie), so the midpoint
    of keys a < b is served by a's entry, and is where b's entry is most likely to do better.
    The result is stored in a's study; bench=None only looks stored results up.
    """
    keys = sorted(entries)
    results = []
    for a, b in zip(keys, keys[1:]):
        m = (a + b) // 2
        if m == a:  # neighbouring keys: no batch size between them
            continue
        inputs = {"M": m, "served": entries[a], "neighbour": entries[b], "rounds": rounds}
        stored = studies[a].user_attrs.get(MIDPOINT)
        if stored and stored.get("inputs") == inputs:
            results.append(stored)
            continue
        if bench is None:
            continue
        start = time.perf_counter()
        if SearchSpace.key(entries[a]) == SearchSpace.key(entries[b]):
            served = neighbour = {"us": None, "reason": "same config"}
        else:
            served, neighbour = retime(bench, [entries[a], entries[b]], m, rounds)
        result = {"inputs": inputs, "M": m, "served_by": a, "neighbour": b, "served": served,
                  "neighbour_timing": neighbour, "neighbour_better": _better(served, neighbour),
                  "seconds": time.perf_counter() - start}
        studies[a].set_user_attr(MIDPOINT, result)
        results.append(result)
    return results


def _better(served: dict, neighbour: dict) -> Optional[bool]:
    """Whether the neighbour's config is faster by more than noise; None when not both timed."""
    if served["us"] is None or neighbour["us"] is None:
        return None
    margin = max(MIN_GAIN, served["spread"], neighbour["spread"])
    return neighbour["us"] < served["us"] * (1 - margin)


# -- the whole run ---------------------------------------------------------------------------------
def consolidate(storage: optuna.storages.BaseStorage, study_names: dict[int, str],
                shape: MoEShape, bench: Optional[Benchmarker], *, finalists: int, rounds: int,
                comparison: Optional[Comparison]) -> dict[int, Config]:
    """Every bucket's entry (buckets without one are left out), then the midpoint check.

    bench=None (an interrupted run) measures nothing: it keeps the stored results that are still
    current and leaves out the buckets that have none.
    """
    studies = existing_studies(storage, study_names)
    entries: dict[int, Config] = {}
    for M, study in sorted(studies.items()):
        result = consolidate_bucket(study, M, shape, bench, finalists=finalists, rounds=rounds,
                                    comparison=comparison)
        if result and result["entry"]:
            entries[M] = _kernel_config(result["entry"]["config"])
    for r in check_midpoints(studies, entries, bench, rounds):
        if r["neighbour_better"]:
            log.warning("M=%d (served by the entry of %d): the entry of %d is faster, %.2f vs "
                        "%.2f us", r["M"], r["served_by"], r["neighbour"],
                        r["neighbour_timing"]["us"], r["served"]["us"])
    return entries


def existing_studies(storage: optuna.storages.BaseStorage,
                     study_names: dict[int, str]) -> dict[int, optuna.Study]:
    """The studies of these names that the storage holds (an interrupted run may lack some)."""
    held = {s.study_name for s in storage.get_all_studies()}
    return {M: optuna.load_study(study_name=name, storage=storage)
            for M, name in study_names.items() if name in held}


def _log_bucket(result: dict) -> None:
    e, d = result["entry"], result["default"]
    vs = f"; vLLM default {d['us']:.2f} us" if d["us"] is not None else ""
    log.info("M=%d: entry %.2f us (%s, re-timed)%s", result["M"], e["us"], e["source"], vs)

