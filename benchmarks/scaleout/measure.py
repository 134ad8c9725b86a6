"""1 GPU vs N GPUs on the same tune: trials per minute and wall-clock to finish.

    python benchmarks/scaleout/measure.py                 # on a host with 2 GPUs: 1 vs 2
    python benchmarks/scaleout/measure.py --gpus 1 2 4 8  # more
    python benchmarks/scaleout/measure.py --replay        # the script itself, on a CPU

Each setting runs `python -m autotune ... workers=N` from scratch into its own journal storage,
with the same shape, buckets and budget. Trials per minute count measured trials between the
first trial's start and the last trial's end (Python start-up and compilation pools included in
the wall-clock only). Results are appended to benchmarks/scaleout/RESULTS.md and written as JSON
beside it. Target (issue 5): at least 1.8x trials per minute with 2 GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def run(n: int, args: argparse.Namespace, folder: Path) -> dict:
    storage = f"journal:{folder / f'workers{n}.journal'}"
    cmd = [sys.executable, "-m", "autotune", f"shape={args.shape}", f"device={args.device}",
           f"trials={args.trials}", f"buckets=[{','.join(map(str, args.buckets))}]",
           f"storage={storage}", f"output_dir={folder / f'configs{n}'}", f"workers={n}",
           "patience=null", "progress=false", *args.extra]  # the same work for every n
    if args.replay:
        cmd += ["benchmark=replay", f"benchmark.tables=[{ROOT / 'tests' / 'data' / 'grids'}]"]
    env = dict(os.environ)
    if args.cold:  # each setting compiles from an empty Triton cache, as a first run would
        env["TRITON_CACHE_DIR"] = str(folder / f"triton{n}")
    log = args.logs / f"workers{n}.log"
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            proc.wait(timeout=args.limit)
        except subprocess.TimeoutExpired:  # stop it as Ctrl-C would; count what it finished
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    wall = time.perf_counter() - start
    finished = proc.returncode == 0
    if not finished:
        print(f"workers={n}: exit code {proc.returncode} after {wall:.0f} s; log: {log}",
              file=sys.stderr)
    sys.path.insert(0, str(ROOT))
    from autotune.study.storage import open_storage

    st = open_storage(storage)
    trials = [t for s in st.get_all_studies() for t in st.get_all_trials(s._study_id)
              if t.user_attrs.get("measured")]
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    span = (last - first).total_seconds()
    if not trials:
        return {"gpus": n, "finished": False, "measured": 0, "wall_s": round(wall, 1),
                "measuring_s": 0.0, "trials_per_min": 0.0, "workers_seen": 0}
    return {"gpus": n, "finished": finished, "measured": len(trials), "wall_s": round(wall, 1),
            "measuring_s": round(span, 1), "trials_per_min": round(60 * len(trials) / span, 1),
            "workers_seen": len({t.user_attrs["worker"]["pid"] for t in trials})}


def gpu_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--shape", default="qwen35_tp1")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--buckets", type=int, nargs="+", default=[1, 16, 64, 256, 1024, 4096])
    ap.add_argument("--replay", action="store_true", help="CPU workers on the recorded tables")
    ap.add_argument("--cold", action="store_true", help="an empty Triton cache for each setting")
    ap.add_argument("--limit", type=float, default=600, help="seconds per setting, then Ctrl-C")
    ap.add_argument("--logs", type=Path, default=HERE / "logs", help="each setting's output")
    ap.add_argument("extra", nargs="*", help="more autotune overrides")
    args = ap.parse_args()
    if args.replay:
        args.device, args.buckets = "h200", [1, 16, 64, 256, 4096]

    args.logs.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.gpus:
            rows.append(run(n, args, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["trials_per_min"] or float("nan")
    for r in rows:
        r["speedup"] = round(r["trials_per_min"] / base, 2)

    gpu = "replay on CPU" if args.replay else gpu_name()
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    record = {"when": stamp, "gpu": gpu, "host": platform.node(), "shape": args.shape,
              "cold_compile_cache": args.cold,
              "trials": args.trials, "buckets": args.buckets, "extra": args.extra, "rows": rows}
    out = HERE / f"result-{stamp.replace(' ', '_').replace(':', '')}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"\n## {stamp}: {gpu}, shape={args.shape}, trials={args.trials}, "
             f"buckets={args.buckets}\n",
             "| GPUs | finished | measured | wall-clock s | trials/min | speedup vs 1 |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['gpus']} | {'yes' if r['finished'] else 'no'} | {r['measured']} | "
              f"{r['wall_s']} | {r['trials_per_min']} | {r['speedup']}x |" for r in rows]
    with open(HERE / "RESULTS.md", "a") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
