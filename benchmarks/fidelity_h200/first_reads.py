"""Do a new process's first measurements read fast, and does the process warm-up remove it? (GPU)

One process per call: qwen3-30B fp8 block at M=1, layers mode; five configs measured one after
another, three passes, each reading printed in order. Run it twice, in two processes:

    python benchmarks/fidelity_h200/first_reads.py --warmup 0
    python benchmarks/fidelity_h200/first_reads.py --warmup 1.0

Session 6's tunes read their first three trials 5-9% fast against their re-timing.

It ran on 2026-12-03 at commit ef76089, whose GpuTimer had `process_warmup_s` (replays of the first
graph before the first timing). The warm-up did not change the first readings, so it was removed;
check out ef76089 to run this again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from autotune.bench.timing import GpuTimer, TimerSpec  # noqa: E402

BASE = dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=64, BLOCK_SIZE_K=128, num_warps=4)
CONFIGS = [dict(BASE, GROUP_SIZE_M=1, num_stages=4), dict(BASE, GROUP_SIZE_M=1, num_stages=5),
           *(dict(BASE, GROUP_SIZE_M=g, num_stages=5) for g in (16, 32, 64))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=float, required=True, help="process_warmup_s")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if "process_warmup_s" not in TimerSpec.__dataclass_fields__:
        sys.exit("first_reads.py: this GpuTimer has no process warm-up; run it at commit ef76089")
    spec = TimerSpec(E=128, N=768, K=2048, topk=8, dtype="fp8_w8a8", block_shape=(128, 128),
                     capability=(9, 0), process_warmup_s=args.warmup)
    timer = GpuTimer(spec)
    readings = []
    for p in range(3):
        for i, config in enumerate(CONFIGS):
            us = timer.measure(config, 1)["us"]
            readings.append({"pass": p, "config": i, "us": us})
    for i in range(len(CONFIGS)):
        row = [r["us"] for r in readings if r["config"] == i]
        print(f"warmup {args.warmup} s, config {i} (G{CONFIGS[i]['GROUP_SIZE_M']} "
              f"s{CONFIGS[i]['num_stages']}): " + "  ".join(f"{u:.2f}" for u in row) +
              f"   first / last {row[0] / row[-1]:.3f}")
    if args.out:
        args.out.write_text(json.dumps({"warmup_s": args.warmup, "configs": CONFIGS,
                                        "readings": readings}, indent=1))


if __name__ == "__main__":
    main()
