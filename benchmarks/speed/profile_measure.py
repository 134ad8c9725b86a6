"""Where a measurement's time goes, and how few replays rank configs as the full count does (GPU).

For each batch size, the distinct entries of a tuned file (the configs a tune weighs there) are
captured once each, timing the phases of `GpuTimer.measure`: the inputs, then the eager calls and
graph capture with the kernels already loaded. Then `--rounds` interleaved rounds replay every
graph `--replays` times with no warmup, keeping every sample, so that any (warmup, replays)
protocol can be judged offline on the same samples (`analyse_replays.py`). Last, one full
`measure` per config: its wall time as a tune pays it.

    python benchmarks/speed/profile_measure.py --shape qwen3_30b_a3b_tp1 \
        --file benchmarks/fidelity_h200/session8/qwen3_bf16_a4/E=128,N=768,device_name=NVIDIA_H200.json \
        --out $OUT/profile_bf16.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from autotune.bench.gpu import timer_spec  # noqa: E402
from autotune.bench.protocol import interleaved_order  # noqa: E402
from autotune.bench.timing import GpuTimer  # noqa: E402
from autotune.files.vllm import read_entries  # noqa: E402
from autotune.plan import build_plan  # noqa: E402
from autotune.problem.space import SearchSpace  # noqa: E402
from benchmarks.benchmarker.campaign import compose  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", required=True)
    ap.add_argument("--file", type=Path, required=True, help="a tuned vLLM config file")
    ap.add_argument("--buckets", default="1,8,64,256,1024,4096")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--replays", type=int, default=25)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    plan = build_plan(compose(f"shape={args.shape}", "device=auto", "progress=false",
                              *args.overrides))
    timer = GpuTimer(timer_spec(plan))
    torch = timer.torch
    configs = list({SearchSpace.key(c): c for c in read_entries(args.file).values()}.values())
    result = {"shape": args.shape, "file": str(args.file), "spec": repr(timer.spec),
              "device": torch.cuda.get_device_name(0), "buckets": []}
    for M in [int(m) for m in args.buckets.split(",")]:
        bucket = {"M": M, "configs": []}
        graphs = []
        for config in configs:
            t0 = time.perf_counter()
            timer.problem.inputs(M, timer.copies_for(M))
            inputs_s = time.perf_counter() - t0
            try:
                timer.capture(config, M)  # loads the kernels into this process: not timed
                t0 = time.perf_counter()
                graph, _, copies, calls = timer.capture(config, M)
                capture_s = time.perf_counter() - t0
            except Exception as exc:  # noqa: BLE001 - a config that does not run at this M
                print(f"M={M} {config}: {type(exc).__name__}: {exc}", flush=True)
                continue
            graphs.append((config, graph, calls))
            bucket["configs"].append({"config": config, "layers": len(copies), "calls": calls,
                                      "inputs_s": inputs_s, "capture_s": capture_s,
                                      "rounds": [], "replay_s": []})
        for i in interleaved_order(len(graphs), args.rounds):
            _, graph, calls = graphs[i]
            t0 = time.perf_counter()
            samples = timer.replay(graph, calls, 0, args.replays)
            bucket["configs"][i]["replay_s"].append(time.perf_counter() - t0)
            bucket["configs"][i]["rounds"].append(samples)
        del graphs
        torch.cuda.synchronize()
        for entry in bucket["configs"]:
            t0 = time.perf_counter()
            m = timer.measure(entry["config"], M)
            entry["measure_s"] = time.perf_counter() - t0
            entry["measure_us"] = m["us"]
        result["buckets"].append(bucket)
        print(f"M={M}: {len(bucket['configs'])} configs, measure "
              f"{sum(e['measure_s'] for e in bucket['configs']) / len(bucket['configs']):.3f} s "
              f"each, capture {sum(e['capture_s'] for e in bucket['configs']):.2f} s in all",
              flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
