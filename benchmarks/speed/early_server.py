"""What starting the compile pool's server before the plan saves (`bench.start_early`): the time
from a run's start to its pool's first process being ready to compile, with the server started
before the plan is built or only with the pool (as up to session 16).

    python benchmarks/speed/early_server.py [--repeats 3] [--workers 4]

Each repeat is a fresh interpreter (the server is one per process): it builds the plan of
qwen3_30b_a3b_tp1 (device=cpu: no GPU check, so on a GPU host the plan step is longer and the
overlap larger), starts a pool and waits until each of its processes has run its initializer.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ONE = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from autotune.bench import start_early
    from tests.conftest import compose
    early, workers = sys.argv[1] == "early", int(sys.argv[2])
    if early:
        start_early("gpu", workers)
    from autotune.bench.compile import CompilePool, _started
    from autotune.bench.gpu import timer_spec
    from autotune.plan import build_plan
    plan = build_plan(compose("shape=qwen3_30b_a3b_tp1", "device=cpu"))
    planned = time.perf_counter() - t0
    pool = CompilePool(timer_spec(plan), workers)
    pool.start()
    started = time.perf_counter() - t0
    futures = [pool._executor().submit(_started) for _ in range(workers)]
    [f.result() for f in futures]
    ready = time.perf_counter() - t0
    pool.close()
    print(json.dumps(dict(early=early, planned=round(planned, 2), pool_started=round(started, 2),
                          ready=round(ready, 2))))
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    for _ in range(args.repeats):
        for mode in ("late", "early"):
            out = subprocess.run([sys.executable, "-c", ONE, mode, str(args.workers)], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout
            print(json.dumps(json.loads(out.splitlines()[-1])), flush=True)


if __name__ == "__main__":
    main()
