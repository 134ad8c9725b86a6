"""Where the first trial's compile wait goes: a compile pool started cold, taken apart (GPU host).

A whole tune's first trial waits 12-15 s for its compile (benchmarks/speed/README.md). This starts
pools of spawned processes as the benchmarker's CompilePool does (same initializer work: imports,
the MoECompiler), each from an empty Triton cache, and times in every process: the imports, the
MoECompiler, the CUDA driver's first call (Triton asks it for the target), and each compile, with
each kernel's compile time; all as seconds since the pool was started. Then, in a fresh process
on the cache the pool filled (as the measuring worker), the first two eager calls of three configs.

    python benchmarks/speed/profile_compile_pool.py --out profile.json [--workers 1 14]
        [--start spawn forkserver]

`--start`: how the pool's processes start: spawned (each imports torch and Triton itself, as the
pool did up to session 15) or forked from a server that imported them once (CompilePool now).

Configs: vLLM's default for M=1 and the next ones of a fixed list (distinct tiles), one per worker.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver

from autotune.bench.server import PRELOAD

_T0 = 0.0
_STATE: dict = {}

CONFIGS = [
    dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=n, BLOCK_SIZE_K=k, GROUP_SIZE_M=1, num_warps=w, num_stages=s)
    for n in (32, 64, 128) for k in (64, 128) for w in (4,) for s in (3, 4, 5)
]


def _init(t0: float, shape: dict) -> None:
    start = time.time() - t0
    import torch  # noqa: F401
    import triton  # noqa: F401
    imported = time.time() - t0
    from autotune.kernel import MoECompiler
    compiler = MoECompiler(**shape)
    built = time.time() - t0
    from triton.runtime import driver
    driver.active.get_current_device()
    driver.active.get_current_target()
    cuda = time.time() - t0
    _time_each_kernel()
    _STATE.update(t0=t0, compiler=compiler, phases=dict(
        pid=os.getpid(), spawned=round(start, 3), imported=round(imported, 3),
        compiler=round(built, 3), cuda_driver=round(cuda, 3)))


def _time_each_kernel() -> None:
    """Record each kernel's compile (or cache load) time: compile_only looks the function up
    in its module at every launch."""
    from autotune.kernel import launch

    plain = launch.compile_kernel

    def timed(kernel, grid, args, kwargs):
        start = time.time()
        try:
            return plain(kernel, grid, args, kwargs)
        finally:
            _STATE.setdefault("kernels", []).append(
                [launch.kernel_name(kernel), round(time.time() - start, 3)])

    launch.compile_kernel = timed


def _compile(config: dict, M: int) -> dict:
    t0 = _STATE["t0"]
    start = time.time() - t0
    _STATE["kernels"] = []
    _STATE["compiler"].compile(config, M)
    return {**_STATE["phases"], "config": config, "kernels": _STATE["kernels"],
            "compile_start": round(start, 3), "compile_end": round(time.time() - t0, 3)}


def _first_calls(shape: dict, M: int, configs: list) -> dict:
    """What the measuring worker pays at its first calls, the binaries already in the cache: the
    imports, CUDA, the inputs, then each config's first eager call (loading the binaries; Triton
    may build launchers) and its second."""
    t0 = time.time()
    import torch

    from autotune.kernel import MoEPlan, make_inputs
    imported = time.time() - t0
    torch.cuda.init()
    torch.zeros(1, device="cuda")
    cuda = time.time() - t0
    inputs = make_inputs(shape["E"], shape["N"], shape["K"], shape["topk"], M, shape["dtype"],
                         shape["block_shape"], "cuda")
    torch.cuda.synchronize()
    built = time.time() - t0
    calls = []
    for config in configs:
        plan = MoEPlan.create(inputs, {**config, "SWAP_AB": False})
        for i in range(2):
            start = time.time()
            plan()
            torch.cuda.synchronize()
            calls.append({"config": config, "call": i, "s": round(time.time() - start, 3)})
    return {"imported": round(imported, 3), "cuda": round(cuda, 3), "inputs": round(built, 3),
            "calls": calls}


def profile(workers: int, shape: dict, M: int, start: str) -> dict:
    cache = tempfile.mkdtemp(prefix="triton_cold_")
    os.environ["TRITON_CACHE_DIR"] = cache  # spawned processes inherit it
    ctx = mp.get_context(start)
    if start == "forkserver":  # a server of its own per profile: it inherits this cache
        ctx = mp.context.ForkServerContext()
        ctx._forkserver = forkserver.ForkServer()
        ctx._forkserver.set_forkserver_preload(PRELOAD)
    t0 = time.time()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                               initializer=_init, initargs=(t0, shape))
    futures = [pool.submit(_compile, c, M) for c in CONFIGS[:workers * 2]]
    results = [f.result() for f in futures]
    pool.shutdown()
    wall = time.time() - t0
    # A fresh process on the cache the pool filled, as the measuring worker is.
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as one:
        first = one.submit(_first_calls, shape, M, CONFIGS[:3]).result()
    if start == "forkserver":
        ctx._forkserver._stop()
    return {"workers": workers, "start": start, "M": M, "cache": cache, "wall": round(wall, 3),
            "first_done": min(r["compile_end"] for r in results), "compiles": results,
            "measuring_worker": first}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 14])
    ap.add_argument("--start", nargs="+", default=["spawn", "forkserver"],
                    choices=["spawn", "forkserver"])
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--M", type=int, default=1)
    args = ap.parse_args()
    block = [128, 128] if args.dtype == "fp8_w8a8" else None
    shape = dict(E=128, N=768, K=2048, topk=8, dtype=args.dtype, block_shape=block)
    runs = [profile(w, shape, args.M, start) for start in args.start for w in args.workers]
    for run in runs:
        print(f"workers={run['workers']}, {run['start']}: first compile done at {run['first_done']:.2f} s, "
              f"all {len(run['compiles'])} at {run['wall']:.2f} s")
        for r in sorted(run["compiles"], key=lambda r: r["compile_end"]):
            print(f"  pid {r['pid']}: spawned {r['spawned']:.2f} imported {r['imported']:.2f} "
                  f"compiler {r['compiler']:.2f} cuda {r['cuda_driver']:.2f} | compile "
                  f"{r['compile_start']:.2f}-{r['compile_end']:.2f}: "
                  + ", ".join(f"{name} {sec:.2f}" for name, sec in r["kernels"]))
        w = run["measuring_worker"]
        print(f"  measuring worker: imported {w['imported']:.2f} cuda {w['cuda']:.2f} "
              f"inputs {w['inputs']:.2f} | first calls "
              + ", ".join(f"{c['s']:.2f}" for c in w["calls"]))
    with open(args.out, "w") as f:
        json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
