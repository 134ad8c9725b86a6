"""No process outlives its run: SIGKILL a run's parent at random moments, count what is left.

    python benchmarks/lifetime/orphans.py                # 20 kills, on the CPU (about 15 min)
    python benchmarks/lifetime/orphans.py --kills 4      # a quick look

Alternates a single run and a `workers=2` run of `shape=tiny device=cpu` (the interpreter
benchmarker: every run has measuring-worker children, a workers=2 run two levels of them), each
kill at a uniformly random moment 0.3-60 s after the start (start-up, measuring, re-timing,
writing). Only the parent is killed (as the OOM killer or `kill -9 PID` do), not its group. Per
kill: the processes of the run's session alive 10 s later (zombies not counted), and whether every
trial finished before the kill is still in the storage, unchanged. At the end one run per mode
without a kill must complete the budget. Results are written as JSON beside this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import optuna
import psutil
from optuna.trial import TrialState

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
GONE_WITHIN_S = 10


def session_alive(sid: int) -> list[str]:
    left = []
    for p in psutil.process_iter(["status", "cmdline"]):
        try:
            if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {' '.join(p.info['cmdline'] or [])[-70:]}")
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return left


def finished_trials(url: str) -> dict[tuple[str, int], tuple[str, object]]:
    """(study, trial number) -> (config, us) of every measured trial, read with Optuna alone."""
    try:
        storage = optuna.storages.RDBStorage(url)
    except Exception:  # not created yet
        return {}
    out = {}
    for s in storage.get_all_studies():
        for t in storage.get_all_trials(s._study_id, deepcopy=False):
            if t.state == TrialState.COMPLETE and t.user_attrs.get("measured"):
                out[(s.study_name, t.number)] = (json.dumps(t.user_attrs["config"]),
                                                 t.user_attrs.get("us"))
    return out


def command(mode: str, folder: Path, trials: int) -> list[str]:
    return [sys.executable, "-m", "autotune", "shape=tiny", "device=cpu", "buckets=[1,16]",
            f"trials={trials}", "patience=null", "progress=false",
            f"storage=sqlite:///{folder / f'{mode}.db'}", f"output_dir={folder / mode}",
            f"workers={2 if mode == 'workers2' else 1}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--trials", type=int, default=100, help="budget per bucket")
    ap.add_argument("--seed", type=int, default=15)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="autotune-orphans-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kills = []
    for i in range(args.kills):
        mode = "single" if i % 2 == 0 else "workers2"
        url = f"sqlite:///{folder / f'{mode}.db'}"
        at = rng.uniform(0.3, 60.0)
        run = subprocess.Popen(command(mode, folder, args.trials), cwd=folder, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        time.sleep(at)
        before = finished_trials(url)
        children = len(session_alive(run.pid)) - 1
        finished_first = run.poll() is not None  # the run ended by itself: nothing to kill
        if not finished_first:
            os.kill(run.pid, signal.SIGKILL)
        run.wait()
        deadline = time.time() + GONE_WITHIN_S
        while session_alive(run.pid) and time.time() < deadline:
            time.sleep(0.2)
        left = session_alive(run.pid)
        for line in left:  # leave nothing to the next kill
            os.kill(int(line.split()[0]), signal.SIGKILL)
        after = finished_trials(url)
        lost = [k for k, v in before.items() if after.get(k) != v]
        kills.append({"mode": mode, "at_s": round(at, 2), "children_before": children,
                      "finished_before_kill": finished_first, "left_after_10s": left,
                      "measured_before": len(before), "lost": len(lost)})
        print(f"kill {i + 1:2d} {mode:8s} at {at:5.1f} s"
              f"{' (had finished)' if finished_first else ''}: {children} children, "
              f"{len(left)} left after {GONE_WITHIN_S} s, {len(before)} finished trials, "
              f"{len(lost)} lost", flush=True)

    finals = {}
    for mode in ("single", "workers2"):
        url = f"sqlite:///{folder / f'{mode}.db'}"
        before = finished_trials(url)
        start = time.time()
        done = subprocess.run(command(mode, folder, args.trials), cwd=folder, env=env,
                              capture_output=True, text=True)
        after = finished_trials(url)
        per_study: dict[str, int] = {}
        for study, _ in after:
            per_study[study] = per_study.get(study, 0) + 1
        finals[mode] = {"returncode": done.returncode, "seconds": round(time.time() - start, 1),
                        "lost": sum(after.get(k) != v for k, v in before.items()),
                        "measured_per_bucket": sorted(per_study.values()),
                        "budget_complete": done.returncode == 0 and len(per_study) == 2
                        and all(n == args.trials for n in per_study.values())}
        print(f"final {mode}: exit {done.returncode}, measured per bucket "
              f"{sorted(per_study.values())} of {args.trials}, {finals[mode]['lost']} lost",
              flush=True)

    result = {
        "date": datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "kills": kills,
        "finals": finals,
        "processes_left": sum(len(k["left_after_10s"]) for k in kills),
        "finished_trials_lost": sum(k["lost"] for k in kills) + sum(
            f["lost"] for f in finals.values()),
    }
    out = HERE / f"orphans_{datetime.now():%Y-%m-%d}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.kills} kills: {result['processes_left']} processes left after "
          f"{GONE_WITHIN_S} s, {result['finished_trials_lost']} finished trials lost, budget "
          f"completed: {all(f['budget_complete'] for f in finals.values())}; {out}")
    ok = (result["processes_left"] == 0 and result["finished_trials_lost"] == 0
          and all(f["budget_complete"] for f in finals.values()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
