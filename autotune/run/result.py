"""What a run returns, and every bucket's outcome as the storage holds it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import optuna

from autotune.files.vllm import Written
from autotune.plan import Plan
from autotune.study.liveness import is_mine
from autotune.study.records import MEASURED, BucketOutcome, StopReason, TrialAttr, read_records
from autotune.study.run_studies import RunStudies


@dataclass
class TuneResult:
    plan: Plan
    outcomes: list[BucketOutcome] = field(default_factory=list)
    entries: dict[int, dict[str, int]] = field(default_factory=dict)  # what the file holds
    settled: dict[int, dict] = field(default_factory=dict)  # their re-timing: us, source
    output_path: Optional[Path] = None  # the vLLM file (None: no bucket has an entry)
    files: list[Path] = field(default_factory=list)  # the vLLM file and its copies
    written: list[Written] = field(default_factory=list)  # the same, with any file kept beside
    report_dir: Optional[Path] = None
    interrupted: bool = False
    bench_stats: dict = field(default_factory=dict)  # measuring/compile/idle time, restarts
    wall_time: dict = field(default_factory=dict)  # seconds by phase (autotune/wall_clock.py)
    problems: list[str] = field(default_factory=list)  # workers that failed, said on stderr
    complete: bool = True  # every bucket finished (False: rerun to resume)


def read_outcomes(plan: Plan, studies: RunStudies,
                  this_run: Optional[dict[int, BucketOutcome]] = None) -> list[BucketOutcome]:
    """Every bucket's measurements as the storage holds them (this run's counts where known)."""
    this_run = this_run or {}
    out = []
    for M, study in studies.existing(plan.buckets).items():
        mine = this_run.get(M)
        out.append(BucketOutcome(
            M=M, study_name=study.study_name, records=read_records(study),
            new_measurements=_measured_here(study),
            excluded=mine.excluded if mine else 0, duplicates=mine.duplicates if mine else 0,
            seconds=mine.seconds if mine else 0.0,
            stop_reason=mine.stop_reason if mine else StopReason.NOT_RUN))
    return out


def _measured_here(study: optuna.Study) -> int:
    """The study's measurements this process made, by their owner stamps (a bucket cut off by
    Ctrl-C has no outcome of its own to count them)."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=MEASURED)
               if t.user_attrs.get(TrialAttr.MEASURED) and is_mine(t.user_attrs.get(TrialAttr.WORKER)))
