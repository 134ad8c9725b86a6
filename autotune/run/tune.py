"""A whole run: one study per bucket, then the config file from everything the studies hold.

`tune(plan)` runs the buckets in this process, or in `workers=N` processes (run/workers.py);
both go through the same bucket loop (run/buckets.py) and end the same way (run/outputs.py).
The file is always made from the storage, not from what this run measured: after Ctrl-C, a kill
or a run shared with other workers, it holds every bucket whose entry is settled.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Optional

import optuna
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from autotune import wall_clock
from autotune.bench import Benchmarker, open_benchmarker
from autotune.bench.protocol import Reporting
from autotune.plan import Plan
from autotune.run.buckets import (
    abandon_mine,
    bucket_budget,
    compile_first_trials,
    consolidate_plan,
    work,
)
from autotune.run.gpu_lock import hold_gpu
from autotune.run.outputs import finish
from autotune.run.result import TuneResult
from autotune.run.stop import check_stop, graceful_stop, uninterrupted
from autotune.run.workers import run_workers
from autotune.study.records import BucketOutcome, Record, read_records
from autotune.study.storage import open_storage


def tune(plan: Plan, bench: Optional[Benchmarker] = None) -> TuneResult:
    """Tune every bucket of the plan and write the config file; resumable at any point.

    bench: a benchmarker to measure with instead of the plan's own (tests); the caller closes it.
    Workers open their own benchmarkers, so it cannot be given with workers > 1.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    wall_clock.reset()
    if plan.cfg.workers > 1:
        if bench is not None:
            raise ValueError("workers > 1 measure with their own benchmarkers: pass no bench")
        return run_workers(plan)
    if bench is not None:
        return _tune_here(plan, open_storage(plan.storage), bench, owns_bench=False)
    with hold_gpu(plan):  # one measurer per GPU: held until the benchmarker is closed
        bench = open_benchmarker(plan)  # its processes start up while the storage opens
        try:
            compile_first_trials(plan, bench)
            wall_clock.start_up_step("benchmarker started")
            storage = open_storage(plan.storage)
        except BaseException:
            bench.close()
            raise
        wall_clock.start_up_step("storage")
        return _tune_here(plan, storage, bench, owns_bench=True)


def _tune_here(plan: Plan, storage: optuna.storages.BaseStorage, bench: Benchmarker,
               owns_bench: bool) -> TuneResult:
    """Every bucket in this process, with a progress bar."""
    result = TuneResult(plan)
    budget = bucket_budget(plan)
    bar = tqdm(total=budget * len(plan.buckets), unit="trial", file=sys.stderr,
               disable=not plan.cfg.progress, dynamic_ncols=True)
    studies = plan.studies(storage)
    outcomes: dict[int, BucketOutcome] = {}
    try:
        # Log lines clear the progress bar and are written above it, not onto its line.
        with graceful_stop(), logging_redirect_tqdm():
            with wall_clock.phase("search"):  # a bucket's re-timing and checks count apart
                work(plan, studies, bench, outcomes=outcomes,
                     on_measured=lambda r: _progress(bar, r),
                     on_bucket=lambda: _recount(bar, studies.tuned, budget))
            bar.close()
            result.entries = consolidate_plan(plan, studies, bench)
            check_stop()
    except KeyboardInterrupt:
        result.interrupted = True
        result.complete = False
        abandon_mine(studies)
    finally:
        bar.close()
        if isinstance(bench, Reporting):
            stats = bench.stats()
            result.bench_stats = {**dataclasses.asdict(stats), "idle_share": stats.idle_share}
        if owns_bench:
            bench.close()
    if result.interrupted:  # keep the entries already re-timed and verified; measure nothing more
        result.entries = consolidate_plan(plan, studies, None)
    with uninterrupted():  # a Ctrl-C now would only lose the file: finish writing it
        finish(result, studies, outcomes)
    return result


def _progress(bar: tqdm, record: Record) -> None:
    bar.update(1)
    if record.ok:
        bar.set_postfix_str(f"last {record.us:.1f} us", refresh=False)


def _recount(bar: tqdm, studies: dict[int, optuna.Study], budget: int) -> None:
    """Set the bar from the storage: other runs may have measured too."""
    if bar.disable:
        return
    # A copy: the other bucket loop may be adding a study meanwhile.
    done = sum(min(budget, len(read_records(s))) for s in list(studies.values()))
    bar.update(done - bar.n)
