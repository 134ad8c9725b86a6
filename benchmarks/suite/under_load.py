"""Run the whole test suite repeatedly, in random order, beside busy processes, and keep every log.

    python benchmarks/suite/under_load.py --runs 10 --busy 2

Each run: ``--busy`` processes spin on the CPU for the whole run (a loaded machine, as CI's shared
cores can be), then ``python -m pytest -q -p no:cacheprovider --random-order`` from the repository
root (pytest-random-order, a test extra), with a fresh seed per run, recorded: rerun one order with
``-- --random-order-seed=SEED``. Logs go to
benchmarks/suite/logs/, one line per run to benchmarks/suite/runs.jsonl: exit status, seed,
duration, load, the failed tests. A run that fails does not stop the next one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SPIN = "while True: pass"


def one_run(index: int, busy: int, extra: list[str]) -> dict:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S")
    log = HERE / "logs" / f"{stamp}_busy{busy}.log"
    log.parent.mkdir(exist_ok=True)
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
    seed = random.randrange(2**31)  # -q hides the plugin's header: pass the seed, keep it
    start = time.monotonic()
    try:
        with log.open("w") as out:
            rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                  "--random-order", f"--random-order-seed={seed}", *extra],
                                 cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    text = log.read_text()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or None
    summary = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return {"run": index, "started": stamp, "commit": commit, "rc": rc, "busy": busy,
            "cores": os.cpu_count(), "seconds": round(time.monotonic() - start, 1), "seed": seed,
            "failed": re.findall(r"^FAILED (\S+)", text, flags=re.M),
            "summary": summary[-1] if summary else None, "log": str(log.relative_to(ROOT))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--busy", type=int, default=2, help="CPU-spinning processes beside the suite")
    p.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = p.parse_args()
    # The suite gets Ctrl-C as from a terminal even when this runs in the background of a script,
    # which starts it with SIGINT ignored (a child inherits that; a handler is reset on exec).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for i in range(1, args.runs + 1):
        record = one_run(i, args.busy, args.pytest_args)
        with (HERE / "runs.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
