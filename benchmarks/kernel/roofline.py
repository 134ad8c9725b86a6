"""Weight-read roofline of the two GEMMs at M = 1, 16, 64, 256, against what a plain read reaches.

Run from the repository root on a CUDA machine (about 3 minutes, most of it compiling):

    python benchmarks/kernel/roofline.py --out benchmarks/kernel/results/<date>_<card>/roofline

Shape: Qwen3.5-35B-A3B-FP8 at TP1 (E=256 N=512 K=2048 top-8, fp8_w8a8 block [128, 128]), uniform
routing. Per M:

- GEMMs: the recorded H200 table's best 24 configs at that M (vLLM 0.33.0's kernel,
  `tests/data/grids`), SWAP_AB by vLLM's Hopper rule, GEMM1 + GEMM2 launches only, L2 cold (the
  calls rotate through 4 weight copies); the fastest is "the best config". Bandwidth = bytes of
  the experts the routing touches (w1, w2 and their scales) / time.
- Read ceiling for the same bytes: a streaming-read Triton kernel that reads exactly the touched
  experts' w1 then w2 (two launches, as the GEMMs), also cold, best of a few chunk sizes. It does
  no math: no GEMM launch pair can read those bytes faster.
- Peaks: the same read kernel over 2 GiB (read bandwidth) and a 2 GiB device copy (read + write).

Timing: a CUDA graph of 10 calls, 3 warm-up replays, 10 timed replays alternating between the
variants, median microseconds per call. Writes OUT/results.json and OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"  # before Triton is imported
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

SHAPE = dict(E=256, N=512, K=2048, topk=8, dtype="fp8_w8a8", block_shape=(128, 128))
KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages")
TABLES = ROOT / "tests" / "data" / "grids"
M_VALUES = (1, 16, 64, 256)
CANDIDATES, COPIES, CALLS, WARMUP, REPLAYS = 24, 4, 10, 3, 10
READ_VARIANTS = [(chunk, warps) for chunk in (2048, 4096, 16384) for warps in (4, 8)]


def log(*args):
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


@triton.jit
def _read_experts_kernel(w_ptr, ids_ptr, out_ptr, expert_words, CHUNK: tl.constexpr,
                         BLOCK: tl.constexpr):  # fmt: skip
    """Program p reads CHUNK int32 words of expert ids[p // chunks]; writes their sum."""
    pid = tl.program_id(0)
    chunks = expert_words // CHUNK
    expert = tl.load(ids_ptr + pid // chunks).to(tl.int64)
    base = w_ptr + expert * expert_words + (pid % chunks) * CHUNK
    acc = tl.zeros([BLOCK], dtype=tl.int32)
    for off in tl.range(0, CHUNK, BLOCK, num_stages=3):
        acc += tl.load(base + off + tl.arange(0, BLOCK))
    tl.store(out_ptr + pid, tl.sum(acc))


def read_experts(w: torch.Tensor, ids: torch.Tensor, out: torch.Tensor, chunk: int, warps: int):
    words = w[0].numel() * w.element_size() // 4
    flat = w.view(-1).view(torch.int32)
    _read_experts_kernel[(ids.numel() * (words // chunk),)](
        flat, ids, out, words, CHUNK=chunk, BLOCK=1024, num_warps=warps
    )


def capture(fn) -> torch.cuda.CUDAGraph:
    for i in range(CALLS):  # compile / load outside the capture
        fn(i)
    torch.cuda.synchronize()
    graph, stream = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        for i in range(CALLS):
            fn(i)
    torch.cuda.synchronize()
    return graph


def time_interleaved(fns: dict) -> dict:
    """Median us per call of each function's graph, replayed alternately."""
    graphs = {name: capture(fn) for name, fn in fns.items()}
    for _ in range(WARMUP):
        for g in graphs.values():
            g.replay()
    samples = {name: [] for name in graphs}
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(REPLAYS):
        for name, g in graphs.items():
            start.record()
            g.replay()
            end.record()
            end.synchronize()
            samples[name].append(start.elapsed_time(end) * 1000.0 / CALLS)
    return {name: statistics.median(s) for name, s in samples.items()}


def candidates(m: int) -> list[dict]:
    from autotune.problem import vllm_rules

    table = json.loads((TABLES / f"NVIDIA_H200_E256_N512_K2048_fp8block_M{m}.json").read_text())
    rows = sorted((r for r in table["results"] if r["us"] is not None), key=lambda r: r["us"])
    capability = torch.cuda.get_device_capability()
    return [dict(r["config"], SWAP_AB=vllm_rules.swap_ab(r["config"], "fp8_w8a8", capability))
            for r in rows[:CANDIDATES]]  # fmt: skip


def compile_config(job):
    os.environ["TRITON_INTERPRET"] = "0"
    from autotune.kernel import MoECompiler

    cfg, m = job
    s = SHAPE
    MoECompiler(s["E"], s["N"], s["K"], s["topk"], s["dtype"], s["block_shape"]).compile(cfg, m)


def peaks() -> dict:
    n = 1 << 31
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    copy_us = time_interleaved({"copy": lambda i: dst.copy_(src)})["copy"]
    w = src.view(512, -1)  # 512 "experts" of 4 MiB
    ids = torch.arange(512, dtype=torch.int32, device="cuda")
    out = torch.empty(512 * (w[0].numel() // 4 // 2048), dtype=torch.int32, device="cuda")
    read_us = min(time_interleaved({
        f"{c},{nw}": (lambda i, c=c, nw=nw: read_experts(w, ids, out, c, nw)) for c, nw in READ_VARIANTS
    }).values())  # fmt: skip
    return dict(copy_GBps=2 * n / copy_us / 1e3, read_GBps=n / read_us / 1e3)


def measure(m: int, configs: list[dict], peaks: dict) -> dict:
    """The best of ``configs`` (GEMMs, cold) and the read ceiling of the same bytes at batch m."""
    from autotune.kernel import MoEPlan, make_inputs

    s = SHAPE
    inputs = make_inputs(s["E"], s["N"], s["K"], s["topk"], m, s["dtype"], s["block_shape"], "cuda",
                         seed=1000 + m)  # fmt: skip
    copies = [inputs.weights] + [inputs.weights.clone() for _ in range(COPIES - 1)]
    touched = torch.unique(inputs.topk_ids).to(torch.int32)
    w = inputs.weights
    nbytes = touched.numel() * sum(t[0].numel() * t.element_size()
                                   for t in (w.w1, w.w2, w.w1_scale, w.w2_scale))  # fmt: skip
    gemm_us = {}
    for start in range(0, len(configs), 8):  # 8 graphs x 4 copies of buffers at a time
        fns = {}
        for j, cfg in enumerate(configs[start : start + 8], start):
            plans = [MoEPlan.create(inputs.with_weights(c), cfg) for c in copies]
            for p in plans:
                p()
            fns[j] = lambda i, plans=plans: plans[i % COPIES].gemms()
        gemm_us.update(time_interleaved(fns))
    best = min(gemm_us, key=gemm_us.get)
    sink = torch.empty(touched.numel() * (w.w1[0].numel() // 4 // 2048), dtype=torch.int32,
                       device="cuda")  # fmt: skip

    def read_pair(i, chunk, warps):
        c = copies[i % COPIES]
        read_experts(c.w1, touched, sink, chunk, warps)
        read_experts(c.w2, touched, sink, chunk, warps)

    reads = time_interleaved({v: (lambda i, v=v: read_pair(i, *v)) for v in READ_VARIANTS})
    read_us = min(reads.values())
    row = dict(M=m, experts_touched=touched.numel(), weight_MB=nbytes / 1e6,
               best_config=configs[best], best_table_rank=best + 1, gemms_cold_us=gemm_us[best],
               gemms_GBps=nbytes / gemm_us[best] / 1e3, read_ceiling_us=read_us,
               read_ceiling_GBps=nbytes / read_us / 1e3, read_variant=min(reads, key=reads.get),
               gemms_of_read_ceiling=read_us / gemm_us[best])  # fmt: skip
    for peak in ("read", "copy"):
        row[f"gemms_of_{peak}_peak"] = row["gemms_GBps"] / peaks[f"{peak}_GBps"]
        row[f"read_ceiling_of_{peak}_peak"] = row["read_ceiling_GBps"] / peaks[f"{peak}_GBps"]
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--workers", type=int, default=12)
    args = parser.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    cands = {m: candidates(m) for m in M_VALUES}
    t0 = time.time()
    jobs = [(c, m) for m in M_VALUES for c in cands[m]]
    with ProcessPoolExecutor(args.workers, mp_context=torch.multiprocessing.get_context("spawn")) as pool:
        list(pool.map(compile_config, jobs))
    log(f"compiled {len(jobs)} (config, M) in {time.time() - t0:.0f} s")

    results = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                   triton=triton.__version__, method=__doc__.split("Shape:")[1].strip())  # fmt: skip
    results["peaks"] = peaks()
    log("peaks", results["peaks"])
    rows = []
    for m in M_VALUES:
        rows.append(measure(m, cands[m], results["peaks"]))
        log("M", m, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()})
        torch.cuda.empty_cache()
    results["rows"] = rows
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    p = results["peaks"]
    lines = [
        f"{results['device']}, torch {results['torch']}, Triton {results['triton']}. "
        f"Peaks: read {p['read_GBps']:.0f} GB/s, copy {p['copy_GBps']:.0f} GB/s (2 GiB).",
        "",
        "| M | experts | weights MB | best GEMMs cold us | GB/s | of read peak | of copy peak "
        "| read of same bytes us | its GB/s | of read peak | GEMMs / read |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['M']} | {r['experts_touched']} | {r['weight_MB']:.1f} | {r['gemms_cold_us']:.1f} "
            f"| {r['gemms_GBps']:.0f} | {r['gemms_of_read_peak']:.0%} | {r['gemms_of_copy_peak']:.0%} "
            f"| {r['read_ceiling_us']:.1f} | {r['read_ceiling_GBps']:.0f} "
            f"| {r['read_ceiling_of_read_peak']:.0%} | {r['gemms_of_read_ceiling']:.0%} |"
        )
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
