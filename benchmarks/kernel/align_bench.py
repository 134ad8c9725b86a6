"""The steps around the GEMMs, old (fmoe-1) against new (fmoe-2), on a GPU; and the compile-only path.

Run from the repository root on a CUDA machine (about 30 s, most of it compiling):

    python benchmarks/kernel/align_bench.py --out benchmarks/kernel/results/<date>_<card>/align

Shape: Qwen3.5-35B-A3B-FP8 at TP1 (E=256 N=512 K=2048 top-8, fp8_w8a8 block [128, 128]), uniform
routing, M = 1, 16, 64, 256, 4096, each with the recorded H200 table's best config (SWAP_AB set by
vLLM's Hopper rule on compute capability 9.x, as vLLM does).

1. compile check: MoECompiler.compile(config, M), then the real call; Triton's in-memory caches
   must not grow (the real call found every binary compile() made).
2. per M, timed interleaved (CUDA graph of 10 calls, 3 warm-up replays, 10 timed replays, median
   us per call): alignment torch (reference_align) vs Triton (moe_align); activation quantization
   (input + silu-and-mul) with 1 vs 16 rows per program; the whole call old vs new; GEMMs only.
   Outputs are checked: alignments equal, whole-call outputs bitwise equal.

Writes OUT/results.json and OUT/results.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"  # before Triton is imported
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from autotune.kernel import (  # noqa: E402
    KERNEL_VERSION,
    MoECompiler,
    MoEPlan,
    make_inputs,
    moe_align,
    naive_routing,
    reference_align,
    use_naive_assignment,
)
from autotune.kernel.align import _align_count_kernel, _align_scatter_kernel  # noqa: E402
from autotune.kernel.fused_moe import _moe_gemm_kernel  # noqa: E402
from autotune.kernel.quant import _launch_rowwise, _rowwise_activation_kernel  # noqa: E402
from autotune.problem import vllm_rules  # noqa: E402

KERNELS = (_moe_gemm_kernel, _rowwise_activation_kernel, _align_count_kernel, _align_scatter_kernel)

SHAPE = dict(E=256, N=512, K=2048, topk=8, dtype="fp8_w8a8", block_shape=(128, 128))
CALLS, WARMUP, REPLAYS = 10, 3, 10
BEST = {  # the recorded H200 table's best config per M (tests/data/grids), vLLM 0.33.0
    1: (16, 64, 128, 32, 4, 4),
    16: (16, 64, 128, 1, 4, 3),
    64: (16, 64, 128, 16, 4, 3),
    256: (16, 128, 128, 32, 4, 3),
    4096: (64, 128, 128, 16, 4, 3),
}
KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages")


def log(*args):
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


def config_for(M: int) -> dict:
    cfg = dict(zip(KEYS, BEST[M], strict=True))
    cfg["SWAP_AB"] = vllm_rules.swap_ab(cfg, "fp8_w8a8", torch.cuda.get_device_capability())
    return cfg


class OldStepsPlan(MoEPlan):
    """fmoe-1's steps around the GEMMs: torch alignment, one 128-group per quantization program."""

    def align(self):
        inputs, bm = self.inputs, int(self.config["BLOCK_SIZE_M"])
        if use_naive_assignment(inputs.num_pairs, inputs.num_experts, inputs.expert_map):
            self.routing = naive_routing(inputs.topk_ids, bm)
        else:
            self.routing = reference_align(inputs.topk_ids, bm, inputs.num_experts, inputs.expert_map)
        return self.routing

    def quantize_input(self):
        x = self.inputs.x
        self.a1, self.a1_scale = _launch_rowwise(x, x.shape[1], 128, silu=False, quantize=True,
                                                 rows_per_program=1)  # fmt: skip

    def activation(self):
        n = self.inputs.intermediate_size
        self.a2, self.a2_scale = _launch_rowwise(self.cache1, n, 128, silu=True, quantize=True,
                                                 rows_per_program=1)  # fmt: skip


def compiled_variants() -> int:
    """Binaries in the in-memory caches of the package's kernels (Triton 3.4 to 3.9)."""
    return sum(len(caches[0]) for k in KERNELS for caches in k.device_caches.values())


def capture(fn) -> torch.cuda.CUDAGraph:
    fn()  # compile / load outside the capture
    torch.cuda.synchronize()
    graph, stream = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    with torch.cuda.stream(stream), torch.cuda.graph(graph, stream=stream):
        for _ in range(CALLS):
            fn()
    torch.cuda.synchronize()
    return graph


def time_interleaved(fns: dict) -> dict:
    """Median and IQR (us per call) of each function's graph, replayed alternately."""
    graphs = {name: capture(fn) for name, fn in fns.items()}
    for _ in range(WARMUP):
        for g in graphs.values():
            g.replay()
    events = {name: [] for name in graphs}
    for _ in range(REPLAYS):
        for name, g in graphs.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            g.replay()
            end.record()
            events[name].append((start, end))
    torch.cuda.synchronize()
    out = {}
    for name, pairs in events.items():
        samples = sorted(s.elapsed_time(e) * 1000.0 / CALLS for s, e in pairs)
        q = statistics.quantiles(samples, n=4)
        out[name] = dict(us=round(statistics.median(samples), 2), iqr=round(q[2] - q[0], 2))
    del graphs
    return out


def same_routing(a, b) -> bool:
    return bool(torch.equal(a.sorted_token_ids, b.sorted_token_ids)
                and torch.equal(a.expert_ids, b.expert_ids)
                and torch.equal(a.num_tokens_post_padded, b.num_tokens_post_padded))  # fmt: skip


def compile_check(Ms) -> list[dict]:
    s = SHAPE
    compiler = MoECompiler(s["E"], s["N"], s["K"], s["topk"], s["dtype"], s["block_shape"])
    rows = []
    for M in Ms:
        cfg = config_for(M)
        t0 = time.perf_counter()
        names = compiler.compile(cfg, M)
        seconds = time.perf_counter() - t0
        before = compiled_variants()
        inputs = make_inputs(**s, M=M, device="cuda", seed=M)
        MoEPlan.create(inputs, cfg)()
        torch.cuda.synchronize()
        grown = compiled_variants() - before
        rows.append(dict(M=M, config=cfg, compiled=list(names), compile_s=round(seconds, 2),
                         recompiled_by_real_call=grown, ok=grown == 0))  # fmt: skip
        log(f"compile M={M}: {len(names)} kernels in {seconds:.1f}s, real call recompiled {grown}")
    return rows


def bench_m(M: int) -> dict:
    s = SHAPE
    cfg = config_for(M)
    bm = cfg["BLOCK_SIZE_M"]
    inputs = make_inputs(**s, M=M, device="cuda", seed=M)
    new, old = MoEPlan.create(inputs, cfg), OldStepsPlan.create(inputs, cfg)
    out_new, out_old = new().clone(), old().clone()
    # A plan of its own for the GEMMs: capturing the others' calls leaves their routing in
    # graph memory that only a replay fills.
    gemm_plan = MoEPlan.create(inputs, cfg)
    gemm_plan()
    torch.cuda.synchronize()
    ids = inputs.topk_ids
    align_equal = same_routing(moe_align(ids, bm, s["E"]), reference_align(ids, bm, s["E"]))
    diff = (out_new.float() - out_old.float()).abs().max().item()

    def quant_old():
        old.quantize_input()
        old.activation()

    def quant_new():
        new.quantize_input()
        new.activation()

    times = time_interleaved({
        "gemms": gemm_plan.gemms,
        "align_torch": lambda: reference_align(ids, bm, s["E"]),
        "align_triton": lambda: moe_align(ids, bm, s["E"]),
        "quant_1row": quant_old,
        "quant_16rows": quant_new,
        "call_old": old,
        "call_new": new,
    })  # fmt: skip
    return dict(M=M, config=cfg, naive=new.routing.naive, align_equal=align_equal,
                out_equal=bool(torch.equal(out_new, out_old)), out_max_abs_diff=diff,
                times=times)  # fmt: skip


def markdown(results: dict) -> str:
    lines = [f"# Alignment / quantization: old vs new ({results['device']}, kernel "
             f"{results['kernel_version']}, Triton {results['triton']})", "",
             "Median us per call (CUDA graph of 10 calls, interleaved replays).", "",
             "| M | naive | align torch | align Triton | quant 1 row | quant 16 rows | call old | "
             "call new | GEMMs | new overhead | equal (align, out) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in results["rows"]:
        t = {k: v["us"] for k, v in r["times"].items()}
        lines.append(
            f"| {r['M']} | {r['naive']} | {t['align_torch']} | {t['align_triton']} | "
            f"{t['quant_1row']} | {t['quant_16rows']} | {t['call_old']} | {t['call_new']} | "
            f"{t['gemms']} | {t['call_new'] - t['gemms']:.1f} | {r['align_equal']}, "
            f"{r['out_equal']} |")  # fmt: skip
    lines += ["", "Compile check (MoECompiler.compile, then the real call):", ""]
    for c in results["compile_check"]:
        lines.append(f"- M={c['M']}: {len(c['compiled'])} kernels in {c['compile_s']} s; real call "
                     f"recompiled {c['recompiled_by_real_call']} ({'ok' if c['ok'] else 'FAIL'})")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="directory for results.json/.md")
    parser.add_argument("--m", type=int, nargs="*", default=list(BEST), help="batch sizes")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import triton

    t0 = time.time()
    results = dict(device=torch.cuda.get_device_name(0), triton=triton.__version__,
                   torch=torch.__version__, kernel_version=KERNEL_VERSION, shape=SHAPE,
                   calls_per_graph=CALLS, replays=REPLAYS)  # fmt: skip
    results["compile_check"] = compile_check(args.m)
    results["rows"] = []
    for M in args.m:
        row = bench_m(M)
        results["rows"].append(row)
        log(f"M={M}: " + ", ".join(f"{k} {v['us']}" for k, v in row["times"].items())
            + f"; align equal {row['align_equal']}, out equal {row['out_equal']}")  # fmt: skip
    results["seconds"] = round(time.time() - t0, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = markdown(results)
    (args.out / "results.md").write_text(text)
    print(text)
    ok = all(c["ok"] for c in results["compile_check"]) and all(
        r["align_equal"] and r["out_equal"] for r in results["rows"])  # fmt: skip
    log(f"done in {results['seconds']} s: {'all checks passed' if ok else 'CHECK FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
