"""The report's data, collected from the storage alone (report.json is this, as JSON)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.consolidate.finalists import Consolidation
from autotune.consolidate.ties import differs, tied
from autotune.errors import UserError
from autotune.files.names import config_file_name
from autotune.problem import vllm_rules
from autotune.problem.space import SearchSpace
from autotune.problem.vllm_rules import CONFIG_KEYS
from autotune.study.names import StudyName
from autotune.study.records import StudyAttr, TrialAttr
from autotune.study.run_studies import RunStudies

FORMAT = "autotune-report/1"


# -- the data --------------------------------------------------------------------------------------
def collect(storage: optuna.storages.BaseStorage, study_names: list[str],
            storage_url: str = "", studies: Optional[dict[int, optuna.Study]] = None
            ) -> dict[str, Any]:
    """The report's data, from the studies of one run (one study per bucket; `studies`: those
    the storage holds, when the caller has them open)."""
    buckets_by_name = {StudyName.bucket(name).M: name for name in study_names}
    if studies is None:
        studies = RunStudies(storage, buckets_by_name).existing()
    if not studies:
        raise UserError(f"storage {storage_url or ''} holds none of the studies "
                        f"{study_names[0]} ...; nothing to report")
    attrs = next(iter(studies.values())).user_attrs
    shape, device = attrs.get(StudyAttr.SHAPE, {}), attrs.get(StudyAttr.DEVICE, "")
    block = tuple(shape["block_shape"]) if shape.get("block_shape") else None
    buckets = [_bucket(M, buckets_by_name[M], studies.get(M), shape)
               for M in sorted(buckets_by_name)]
    midpoints = _midpoints(studies, buckets)
    compared = next((b["file_name"] for b in buckets if b.get("file_name")), None)
    return {
        "format": FORMAT,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_file": config_file_name(shape["E"], shape["N"], device, shape["dtype"], block),
        "shape": shape,
        "device": device,
        "search_space": attrs.get(StudyAttr.SEARCH_SPACE, {}).get("name"),
        "benchmark": attrs.get(StudyAttr.BENCHMARK, {}),
        "storage": storage_url,
        "studies": StudyName.bucket(study_names[0]).pattern(),
        "compared_with": compared,
        "buckets": buckets,
        "midpoints": midpoints,
        "summary": _summary(buckets, midpoints),
        # The last run's wall time by phase (autotune/wall_clock.py), up to this report.
        "wall_time": studies[min(studies)].user_attrs.get(StudyAttr.WALL_TIME),
    }


def _bucket(M: int, name: str, study: Optional[optuna.Study], shape: dict) -> dict[str, Any]:
    if study is None:
        return {"M": M, "study": name, "entry": None, "status": "not tuned", "trials": 0,
                "pruned": 0, "infeasible": 0, "excluded": 0, "seconds": 0.0, "history": []}
    trials = study.get_trials(deepcopy=False)
    measured = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get(TrialAttr.MEASURED)]
    history = [t.user_attrs.get(TrialAttr.US) for t in measured]
    out: dict[str, Any] = {
        "M": M, "study": name,
        "trials": len(measured),
        "pruned": sum(1 for t in trials if t.state == TrialState.PRUNED),
        "infeasible": sum(1 for us in history if us is None),
        "excluded": sum(1 for t in trials if TrialAttr.EXCLUDED in t.user_attrs),
        "history": history,
    }
    kind = study.user_attrs.get(StudyAttr.BENCHMARK, {}).get("kind", "benchmark")
    cons = Consolidation.stored(study)
    extra_seconds = sum(study.user_attrs.get(k, {}).get("seconds", 0.0)
                        for k in (StudyAttr.CONSOLIDATION, StudyAttr.MIDPOINT))
    out["seconds"] = _busy_seconds(trials) + extra_seconds
    if cons is None:
        out.update(_first_pass(M, measured, shape))
    else:
        out.update(_consolidated(cons, kind, len(measured)))
    out["speedup_vs_default"] = _ratio(out.get("default_us"), out.get("tuned_us"))
    out["speedup_vs_file"] = _ratio(out.get("file_us"), out.get("tuned_us"))
    return out


def _consolidated(cons: Consolidation, kind: str, measured: int) -> dict[str, Any]:
    entry, default, file = cons.entry, cons.default, cons.file
    out: dict[str, Any] = {
        "retimed": True, "rounds": cons.rounds,
        "entry": entry and {k: entry["config"][k] for k in CONFIG_KEYS},
        "source": entry and entry["source"], "trial": entry and entry["trial"],
        "tuned_us": entry and entry["us"], "tuned_spread": entry and entry["spread"],
        "first_pass_us": entry and entry["first_pass_us"],
        "default_config": default["config"], "default_us": default["us"],
        "default_note": _note(default),
        "candidates": cons.candidates, "skipped": cons.skipped,
        "runner_up": _runner_up(entry, cons.candidates),
    }
    if entry is None:
        out["status"] = "no config passed" if cons.candidates else "no feasible config"
        out["verification"] = "n/a"
    else:
        out["status"] = "written"
        out["verified"] = entry.get("verified")
        out["verification"] = "passed" if entry.get("verified") else f"not verified ({kind})"
    if file is not None:
        out.update(file_name=file["file"], file_key=file["key"], file_config=file["config"],
                   file_runs_as=file["runs_as"], file_us=file["us"], file_note=_note(file))
    if cons.measured != measured:
        out["note"] = (f"re-timed when the study held {cons.measured} trials, it now holds "
                       f"{measured}: rerun the same command to re-time")
    return out


def _runner_up(entry: Optional[dict], candidates: list[dict]) -> Optional[dict[str, Any]]:
    """The fastest re-timed candidate after the entry, what it changes, and the entry's lead (below
    zero where a faster GROUP_SIZE_M variant tied with it and the smaller GROUP_SIZE_M was written)."""
    if entry is None:
        return None
    key = SearchSpace.key(vllm_rules.kernel_config(entry["config"]))
    others = [c for c in candidates if c["us"] is not None
              and SearchSpace.key(vllm_rules.kernel_config(c["config"])) != key]
    if not others:
        return None
    best = min(others, key=lambda c: c["us"])
    return {"trial": best.get("trial"), "source": best["source"], "us": best["us"],
            "lead": best["us"] / entry["us"] - 1, "tie": tied(entry, best),
            "differs": differs(best["config"], entry["config"])}


def _first_pass(M: int, measured: list[FrozenTrial], shape: dict) -> dict[str, Any]:
    """A bucket whose run stopped before re-timing: its study's own numbers, said as such."""
    ok = [t for t in measured if t.user_attrs.get(TrialAttr.US) is not None]
    best = min(ok, key=lambda t: t.user_attrs[TrialAttr.US]) if ok else None
    block = tuple(shape["block_shape"]) if shape.get("block_shape") else None
    default = vllm_rules.default_config(M, shape["E"], shape["dtype"], block)
    seen = {SearchSpace.key({k: t.user_attrs[TrialAttr.CONFIG][k] for k in CONFIG_KEYS}): t
            for t in measured}
    d = seen.get(SearchSpace.key(default))
    return {
        "retimed": False, "entry": None, "status": "not re-timed (not written)",
        "tuned_us": best.user_attrs[TrialAttr.US] if best else None,
        "first_pass_us": best.user_attrs[TrialAttr.US] if best else None,
        "default_config": default,
        "default_us": d.user_attrs.get(TrialAttr.US) if d else None,
        "default_note": None if d and d.user_attrs.get(TrialAttr.US) else "not measured",
        "verification": "n/a",
        "note": "first-pass timings: the run stopped before its finalists were re-timed",
    }


def _note(timing: dict) -> Optional[str]:
    return None if timing["us"] is not None else timing.get("reason", "not timed")


def _ratio(slow: Optional[float], fast: Optional[float]) -> Optional[float]:
    return slow / fast if slow and fast else None


def _busy_seconds(trials: list[FrozenTrial]) -> float:
    """Wall time the trials were running, overlaps counted once and pauses between runs not."""
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials
                   if t.datetime_start and t.datetime_complete)
    total, end = 0.0, None
    for s, e in spans:
        if end is None or s > end:
            total += (e - s).total_seconds()
            end = e
        elif e > end:
            total += (e - end).total_seconds()
            end = e
    return total


def _midpoints(studies: dict[int, optuna.Study], buckets: list[dict]) -> list[dict]:
    """The stored midpoint checks that are about the entries as they are now."""
    written = [b for b in buckets if b.get("entry")]
    out = []
    for a, b in zip(written, written[1:]):
        r = studies[a["M"]].user_attrs.get(StudyAttr.MIDPOINT)
        if r and r["served_by"] == a["M"] and r["neighbour"] == b["M"] \
                and r["inputs"]["served"] == a["entry"] and r["inputs"]["neighbour"] == b["entry"]:
            out.append({**{k: v for k, v in r.items() if k != "inputs"},
                        "rounds": r["inputs"]["rounds"]})
    return out


def _summary(buckets: list[dict], midpoints: list[dict]) -> dict[str, Any]:
    def geomean(key: str) -> Optional[float]:
        values = [b[key] for b in buckets if b.get(key) and b.get("entry")]
        return math.exp(sum(map(math.log, values)) / len(values)) if values else None

    return {
        "buckets": len(buckets),
        "entries": sum(1 for b in buckets if b.get("entry")),
        "trials": sum(b["trials"] for b in buckets),
        "pruned": sum(b["pruned"] for b in buckets),
        "seconds": sum(b["seconds"] for b in buckets),
        "geomean_speedup_vs_default": geomean("speedup_vs_default"),
        "geomean_speedup_vs_file": geomean("speedup_vs_file"),
        "midpoints_neighbour_better": sum(1 for m in midpoints if m["neighbour_better"]),
        "ties": sum(1 for b in buckets if (b.get("runner_up") or {}).get("tie")),
    }


def runs_in(storage: optuna.storages.BaseStorage, text: str = "") -> dict[str, list[str]]:
    """The storage's autotune runs: study-name prefix -> the study names of its buckets."""
    runs: dict[str, list[str]] = {}
    for s in storage.get_all_studies():
        name = StudyName.parse(s.study_name)
        if name is not None and StudyAttr.SHAPE in s.user_attrs and text in s.study_name:
            runs.setdefault(name.run, []).append(s.study_name)
    return runs
