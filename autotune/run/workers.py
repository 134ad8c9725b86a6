"""`workers=N`: N measuring processes on one host sharing the run's studies.

Each worker is a fresh process (spawned, so no CUDA state is inherited) that builds the plan
itself and runs the same bucket loop as a single run (`run.buckets.work`), starting at a different bucket;
the studies in the shared storage keep them from measuring a config twice, and workers that finish
their buckets join the ones still running. On a GPU run each worker gets one GPU
(CUDA_VISIBLE_DEVICES), its own benchmarker and compile pool, and checks that its GPU is the
configured device: studies never mix GPU types.

The worker that finishes a bucket settles its entry (re-timed finalists); when every bucket is
finished, each worker checks the batch sizes between neighbouring entries of its share of the
buckets (a contiguous run; the pairs across shares are not checked). The parent only starts the
workers, shows progress from the storage, passes Ctrl-C on, and writes the file and report from
the storage.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import signal
import sys
import time
from typing import Optional

import optuna
from tqdm import tqdm

from autotune import wall_clock
from autotune.bench import open_benchmarker, start_early
from autotune.config import Config
from autotune.errors import EXIT_INTERRUPTED, UserError
from autotune.lifetime import die_with_parent
from autotune.plan import Plan, benchmark_kind, build_plan
from autotune.run.buckets import abandon_mine, bucket_budget, consolidate_plan, work
from autotune.run.gpu_lock import hold_gpu
from autotune.run.outputs import finish
from autotune.run.result import TuneResult, read_outcomes
from autotune.run.stop import STOP, graceful_stop, stop_requested, uninterrupted
from autotune.study.records import StopReason
from autotune.study.storage import check_parallel_safe, open_storage, storage_errors

log = logging.getLogger(__name__)

STOP_WAIT_S = 300  # after Ctrl-C, how long workers get to finish their trials before SIGKILL


def run_workers(plan: Plan):
    n = plan.cfg.workers
    check_parallel_safe(plan.storage, n)
    pins = gpu_pins(plan, n)
    studies = plan.studies(open_storage(plan.storage))  # creates the tables before workers race
    before = {o.M: len(o.records) for o in read_outcomes(plan, studies)}
    wall_clock.mark_started()  # the workers' own start-up counts in the parent's search
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for i in range(n):
        p = ctx.Process(target=worker_main, args=(_worker_config(plan, i), i, n, pins[i]),
                        name=f"autotune-worker-{i}")
        p.start()
        procs.append(p)

    result = TuneResult(plan)
    budget = bucket_budget(plan)
    bar = tqdm(total=budget * len(plan.buckets), unit="trial", file=sys.stderr,
               disable=not plan.cfg.progress, dynamic_ncols=True, desc=f"{n} workers")
    with graceful_stop(quiet=True), wall_clock.phase("search"):
        try:
            while any(p.is_alive() for p in procs) and not STOP.is_set():
                STOP.wait(1.0)
                if not bar.disable:
                    done = sum(min(budget, len(o.records)) for o in read_outcomes(plan, studies))
                    bar.update(done - bar.n)
            if STOP.is_set():
                result.interrupted = True
                _stop(procs)
        except KeyboardInterrupt:  # a second Ctrl-C: stop the workers now
            result.interrupted = True
            _stop(procs, wait_s=0)
        finally:
            bar.close()
    for i, p in enumerate(procs):
        p.join()
        problem = _exit_problem(i, p.exitcode, pins[i])
        if problem:
            result.problems.append(problem)
            if p.exitcode == EXIT_INTERRUPTED:
                result.interrupted = True

    # A worker returns only once every bucket is finished: one success means all are.
    finished = any(p.exitcode == 0 for p in procs)
    result.complete = finished
    result.entries = consolidate_plan(plan, studies, None)  # what the workers settled
    with uninterrupted():
        finish(result, studies)
    for o in result.outcomes:
        o.new_measurements = len(o.records) - before.get(o.M, 0)
        o.stop_reason = StopReason.FINISHED if finished else StopReason.INCOMPLETE
    return result


def gpu_pins(plan: Plan, n: int) -> list[Optional[str]]:
    """One GPU per worker on a GPU run (from CUDA_VISIBLE_DEVICES when set); None otherwise."""
    if plan.benchmark_kind != "gpu":
        return [None] * n
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
    else:
        import torch

        ids = [str(i) for i in range(torch.cuda.device_count())]
    if n > len(ids):
        raise UserError(f"workers={n} but {len(ids)} GPU(s) are visible ({', '.join(ids) or 'none'}"
                        f"); use workers={len(ids) or 1} or fewer: one worker per GPU")
    return ids[:n]


def _worker_config(plan: Plan, i: int) -> Config:
    cfg = copy.deepcopy(plan.cfg)
    cfg.workers = 1
    cfg.progress = False
    cfg.device.name = plan.device.name  # device=auto: every worker must find the parent's GPU
    if cfg.sampler.seed is not None:
        # The same seed would propose the same configs in every worker; jobs seeded 1, 2, ...
        # (several cluster jobs on one shape) keep distinct seeds for all their workers.
        cfg.sampler.seed += 1000 * i
    return cfg


def worker_main(cfg: Config, index: int, count: int, gpu: Optional[str]) -> None:
    """One worker process: its own plan, storage connection and benchmarker."""
    die_with_parent()  # a worker never outlives the run that started it
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before anything touches CUDA
    logging.basicConfig(level=logging.WARNING, format=f"worker {index}: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    studies = None
    try:
        with graceful_stop(quiet=index > 0):  # one worker says it is stopping
            start_early(benchmark_kind(cfg), cfg.benchmark)
            plan = build_plan(cfg, probe_gpu=True)
            with storage_errors(plan.storage), hold_gpu(plan, stop=stop_requested):
                studies = plan.studies(open_storage(plan.storage))
                bench = open_benchmarker(plan)
                try:
                    first = index * len(plan.buckets) // count
                    work(plan, studies, bench, first=first)
                    # Every bucket is finished and settled: check the batch sizes between the
                    # entries of this worker's share, a contiguous run of buckets.
                    share = plan.buckets[first:(index + 1) * len(plan.buckets) // count]
                    if share:
                        consolidate_plan(plan, studies, bench, buckets=share)
                except KeyboardInterrupt:
                    abandon_mine(studies)
                    sys.exit(EXIT_INTERRUPTED)
                finally:
                    bench.close()
    except UserError as exc:
        print(f"autotune: worker {index}: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


def _stop(procs, wait_s: float = STOP_WAIT_S) -> None:
    """Ask every worker to stop after its trial in flight (SIGTERM: the terminal's Ctrl-C may not
    have reached them, and a second SIGINT would stop them at once), wait, then kill the ones
    still running (their trials are failed as dead by the next run)."""
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.time() + wait_s
    for p in procs:
        while p.is_alive() and time.time() < deadline:
            try:
                p.join(timeout=0.5)
            except KeyboardInterrupt:
                deadline = 0  # a second Ctrl-C: stop waiting
        if p.is_alive():
            p.kill()


def _exit_problem(i: int, code: Optional[int], gpu: Optional[str]) -> Optional[str]:
    where = f"worker {i}" + (f" (GPU {gpu})" if gpu is not None else "")
    if code == 0:
        return None
    if code == EXIT_INTERRUPTED:
        return f"{where} was interrupted"
    if code is not None and code < 0:
        return f"{where} was killed by {signal.Signals(-code).name}"
    return f"{where} failed (exit code {code}; its message is above)"
