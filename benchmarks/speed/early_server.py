"""What the benchmarker's server saves at a run's start (bench/server.py), on this machine's CPU.

    python benchmarks/speed/early_server.py [--repeats 3] [--workers 4]

`pool` lines: the time from a run's start to its compile pool's processes being ready, with the
server started before the plan is built (`bench.start_early`) or only with the pool (up to
session 16). Each repeat is a fresh interpreter (the server is one per process) that builds the
plan of qwen3_30b_a3b_tp1 (device=cpu: no GPU check, so on a GPU host the plan step is longer and
the overlap larger), starts a pool and waits until each of its processes has run its initializer.

`worker` lines: a measuring worker whose timer imports torch, Triton and the kernels (no CUDA
here), from its start to its first answer: spawned, or forked from a server that is up
(`benchmark.worker_from_server`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

POOL = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from autotune.bench import start_early
    from autotune.config import BenchmarkConfig
    from tests.conftest import compose
    early, workers = sys.argv[1] == "early", int(sys.argv[2])
    if early:
        start_early("gpu", BenchmarkConfig(compile_workers=workers))
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
    print(json.dumps(dict(step="pool", early=early, planned=round(planned, 2),
                          pool_started=round(started, 2), ready=round(ready, 2))))
""")

WORKER = textwrap.dedent("""
    import json, sys, time
    from autotune.bench.server import server_context
    from autotune.bench.worker import MeasuringWorker
    sys.path.insert(0, "benchmarks/speed")
    from early_server import make_importing_timer
    forked = sys.argv[1] == "forked"
    if forked:  # a first child: it starts once the server is up
        first = server_context().Process(target=print, args=("server up",))
        first.start()
        first.join()
    t0 = time.perf_counter()
    worker = MeasuringWorker(make_importing_timer, None, forked=forked)
    worker.call("pid")
    ready = time.perf_counter() - t0
    worker.close()
    print(json.dumps(dict(step="worker", forked=forked, ready=round(ready, 2))))
""")


class ImportingTimer:
    """Imports what the GPU timer imports, and answers."""

    def __init__(self):
        import torch  # noqa: F401
        import triton  # noqa: F401

        import autotune.bench.timing  # noqa: F401
        import autotune.kernel  # noqa: F401

    def pid(self) -> int:
        import os

        return os.getpid()


def make_importing_timer(spec) -> ImportingTimer:
    return ImportingTimer()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    for _ in range(args.repeats):
        for script, modes in ((POOL, ("late", "early")), (WORKER, ("spawned", "forked"))):
            for mode in modes:
                out = subprocess.run([sys.executable, "-c", script, mode, str(args.workers)],
                                     cwd=ROOT, capture_output=True, text=True, check=True).stdout
                print(json.dumps(json.loads(out.splitlines()[-1])), flush=True)


if __name__ == "__main__":
    main()
