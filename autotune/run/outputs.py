"""The files a run ends with, all made from the storage: the vLLM file (and its SGLang and
install_dir copies) and the report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from autotune import wall_clock
from autotune.consolidate.finalists import Consolidation
from autotune.errors import UserError
from autotune.files.names import config_file_name, sglang_subdir
from autotune.files.vllm import Written, write_config_file
from autotune.plan import Plan
from autotune.problem.space import SearchSpace
from autotune.report.data import collect
from autotune.report.write import write_report
from autotune.run.result import TuneResult, read_outcomes
from autotune.study.records import BucketOutcome, StudyAttr
from autotune.study.run_studies import RunStudies

log = logging.getLogger(__name__)


def finish(result: TuneResult, studies: RunStudies,
           this_run: Optional[dict[int, BucketOutcome]] = None) -> None:
    """Outcomes from the storage, the files from the entries, the report."""
    plan = result.plan
    result.outcomes = read_outcomes(plan, studies, this_run)
    result.settled = settled_entries(studies, result.entries)
    with wall_clock.phase("files"):
        result.written = write_config_files(plan, result.entries, result.outcomes)
    result.files = [w.path for w in result.written]
    result.output_path = result.files[0] if result.files else None
    _store_wall_time(studies, plan.buckets, result.bench_stats)
    with wall_clock.phase("report"):
        result.report_dir = _write_report(plan, studies)
    result.wall_time = {**wall_clock.seconds(), **_waits(result.bench_stats)}


def _store_wall_time(studies: RunStudies, buckets: list[int], bench_stats: dict) -> None:
    """This run's wall time so far (all but the report's own), for the report to show."""
    held = studies.existing(buckets)
    if held:
        held[min(held)].set_user_attr(StudyAttr.WALL_TIME,
                                      {**wall_clock.seconds(), **_waits(bench_stats)})


def _waits(bench_stats: dict) -> dict:
    """Time the GPU waited, within search and re-timing, for compiles and for the measuring
    worker to start (CUDA, the timer's inputs), where measured."""
    out = {}
    for name, key in wall_clock.WAITS.items():
        if bench_stats.get(key) is not None:
            out[name] = round(bench_stats[key], 2)
    return out


def settled_entries(studies: RunStudies, entries: dict[int, dict[str, int]]) -> dict[int, dict]:
    """The re-timed entry behind each bucket written (its time and source), as the studies hold
    it: what the summary shows, not the first pass's best."""
    out = {}
    for M, study in studies.existing(entries).items():
        cons = Consolidation.stored(study)
        entry = cons.entry if cons else None
        if entry and SearchSpace.key(entry["config"]) == SearchSpace.key(entries[M]):
            out[M] = entry
    return out


def write_config_files(plan: Plan, entries: dict[int, dict[str, int]],
                       outcomes: list[BucketOutcome]) -> list[Written]:
    """The vLLM file; on request its SGLang-named copy and a copy in install_dir. None of them
    silently replaces a better file (formats.write_config_file keeps it beside)."""
    if not entries:
        return []
    version = _triton_version(plan)
    times = {(o.M, SearchSpace.key(r.config)): r.us for o in outcomes for r in o.records if r.ok}
    timing = lambda M, c: times.get((M, SearchSpace.key(c)))  # noqa: E731
    written = [write_config_file(plan.output_path, entries, version, timing)]
    if plan.cfg.sglang:
        s = plan.shape
        name = config_file_name(s.E, s.N, plan.device.name, s.dtype, s.block_shape, "sglang")
        path = plan.output_path.parent / sglang_subdir(version) / name
        # SGLang reads every key as a batch size: no triton_version
        written.append(write_config_file(path, entries, None, timing))
    if plan.cfg.install_dir:
        path = Path(plan.cfg.install_dir).expanduser() / plan.output_path.name
        try:
            written.append(write_config_file(path, entries, version, timing))
        except OSError as exc:
            raise UserError(f"install_dir={plan.cfg.install_dir}: cannot write there "
                            f"({exc.strerror}); the file is at {plan.output_path}") from None
    for w in written:
        if w.kept is not None:
            log.warning(w.describe())
    return written


def _write_report(plan: Plan, studies: RunStudies) -> Optional[Path]:
    held = studies.existing(plan.buckets)
    if not held:  # interrupted before the first trial
        return None
    names = [plan.study_name(M) for M in plan.buckets]
    write_report(collect(studies.storage, names, storage_url=plan.storage, studies=held),
                 plan.report_dir)
    return plan.report_dir


def _triton_version(plan: Plan) -> str:
    if plan.replay is not None:
        return plan.replay.triton_version()
    import triton

    return triton.__version__
