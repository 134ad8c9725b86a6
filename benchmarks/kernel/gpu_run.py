"""One GPU session for the fused-MoE kernel: correctness, speed parity, roofline, swap-AB.

Run on a CUDA machine from the repository root (or a copy of autotune/, tests/, benchmarks/):

    python benchmarks/kernel/gpu_run.py --out OUT --tables DIR [--vllm-kernel PATH]

Shape: Qwen3.5-35B-A3B-FP8 at TP1 (E=256 N=512 K=2048 top-8, fp8_w8a8 block [128, 128]).
Sections (each writes into OUT/results.json, errors are recorded and the run goes on):

1. correctness: the kernel test suite with TRITON_INTERPRET=0 (bf16 and realistic shapes included),
   in three pytest processes while the benchmark kernels compile;
2. parity (M=64): the 20 best configs of the recorded table plus 20 spread over the rest, our
   kernel and (if given) vLLM's fused_moe_kernel, GEMM1+GEMM2 launches only, timed interleaved;
3. roofline: the table's best config at M = 1, 16, 64, 256, 4096, hot and cold L2, against a
   measured device copy bandwidth and fp8/bf16 matmul peaks;
4. swap-AB on vs off at M = 1, 4, 16.

Timing (the recorded tables' method): a CUDA graph of 10 calls, 3 warm-up replays, 8 timed
replays, median microseconds per call; graphs of the compared variants replay alternately.
"Hot": the same weights in all 10 calls (vLLM's tuner). "Cold": the calls rotate through 4 weight
copies (3 GiB), so the weights a call reads were evicted from the 50 MB L2 by the calls between.
Kernels are compiled first in worker processes (Triton's disk cache), so timing never waits on it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

SHAPE = dict(E=256, N=512, K=2048, topk=8, dtype="fp8_w8a8", block_shape=(128, 128))
CONFIG_KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps",
               "num_stages")  # fmt: skip
CALLS_PER_GRAPH, WARMUP_REPLAYS, TIMED_REPLAYS, COLD_COPIES = 10, 3, 8, 4
ROOFLINE_M = (1, 16, 64, 256, 4096)
SWAP_M = (1, 4, 16)
SWAP_CONFIGS = [  # small-M candidates where swap-AB applies (BLOCK_SIZE_M < 64, BLOCK_SIZE_N >= 64)
    dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=64, BLOCK_SIZE_K=128, GROUP_SIZE_M=1, num_warps=4,
         num_stages=3),
    dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=128, BLOCK_SIZE_K=128, GROUP_SIZE_M=1, num_warps=4,
         num_stages=3),
    dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=64, BLOCK_SIZE_K=128, GROUP_SIZE_M=1, num_warps=4,
         num_stages=5),
    dict(BLOCK_SIZE_M=32, BLOCK_SIZE_N=64, BLOCK_SIZE_K=128, GROUP_SIZE_M=1, num_warps=4,
         num_stages=4),
]  # fmt: skip


def log(*args):
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


def key_of(cfg: dict) -> str:
    return ",".join(f"{k}={cfg[k]}" for k in (*CONFIG_KEYS, "SWAP_AB") if k in cfg)


# --------------------------------------------------------------------------- inputs and launches


def build_inputs(m: int):
    from autotune.kernel import make_inputs

    return make_inputs(SHAPE["E"], SHAPE["N"], SHAPE["K"], SHAPE["topk"], m, SHAPE["dtype"],
                       SHAPE["block_shape"], "cuda", seed=1000 + m)  # fmt: skip


def load_vllm_kernel(path: str | None):
    if not path:
        return None
    sys.path.insert(0, str(Path(path).parent))
    import vllm_kernel  # noqa: PLC0415

    return vllm_kernel.launch_vllm_gemm


def vllm_gemms(launch, plan, c1, c3):
    """vLLM's kernel on the same prepared buffers as our plan (GEMM1 + GEMM2)."""
    import triton.language as tl

    w, r, inp = plan.inputs.weights, plan.routing, plan.inputs
    cfg = {k: plan.config[k] for k in CONFIG_KEYS}
    launch(
        plan.a1,
        w.w1,
        c1,
        plan.a1_scale,
        w.w1_scale,
        None,
        r.sorted_token_ids,
        r.expert_ids,
        r.num_tokens_post_padded,
        False,
        inp.topk,
        cfg,
        tl.bfloat16,
        w.block_shape,
    )
    launch(plan.a2, w.w2, c3, plan.a2_scale, w.w2_scale, inp.topk_weights.reshape(-1),
           r.sorted_token_ids, r.expert_ids, r.num_tokens_post_padded, True, 1, cfg,
           tl.bfloat16, w.block_shape)  # fmt: skip


# --------------------------------------------------------------------------- compile workers


def compile_worker(jobs, vllm_path, queue):
    """Run every job once (compiles into Triton's disk cache); report failures."""
    import torch

    from autotune.kernel import MoEPlan

    launch = load_vllm_kernel(vllm_path)
    inputs = {}
    for kind, m, cfg in jobs:
        try:
            if m not in inputs:
                inputs[m] = build_inputs(m)
            plan = MoEPlan.create(inputs[m], cfg)
            plan()
            if kind == "vllm":
                vllm_gemms(
                    launch, plan, torch.empty_like(plan.cache1), torch.empty_like(plan.cache3)
                )
            torch.cuda.synchronize()
            queue.put((kind, m, key_of(cfg), None))
        except Exception as exc:  # a config that cannot compile or launch is a result
            queue.put((kind, m, key_of(cfg), f"{type(exc).__name__}: {str(exc)[:300]}"))
            if "illegal" in str(exc).lower():
                return  # a CUDA fault poisons this process
    queue.put(None)


def compile_all(jobs, vllm_path, workers):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    chunks = [jobs[i::workers] for i in range(workers)]
    procs = [ctx.Process(target=compile_worker, args=(c, vllm_path, queue)) for c in chunks if c]
    for p in procs:
        p.start()
    failures, done, finished = {}, 0, 0
    while finished < len(procs):
        try:
            item = queue.get(timeout=5)
        except Exception:  # queue.Empty: go on unless every worker is gone (a crash)
            if not any(p.is_alive() for p in procs):
                break
            continue
        if item is None:
            finished += 1
            continue
        kind, m, key, error = item
        done += 1
        if error:
            failures[(kind, m, key)] = error
    for p in procs:
        p.join(timeout=30)
    return done, failures


# --------------------------------------------------------------------------- timing


def capture(fn):
    """A CUDA graph of CALLS_PER_GRAPH calls fn(i)."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for i in range(CALLS_PER_GRAPH):  # warm-up outside the graph (lazy init, autotune)
            fn(i)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(CALLS_PER_GRAPH):
            fn(i)
    torch.cuda.synchronize()
    return graph


def time_interleaved(graphs: dict) -> dict:
    """Median (and spread) microseconds per call of each graph, replayed alternately."""
    import torch

    for _ in range(WARMUP_REPLAYS):
        for g in graphs.values():
            g.replay()
    torch.cuda.synchronize()
    samples = {name: [] for name in graphs}
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(TIMED_REPLAYS):
        for name, g in graphs.items():
            start.record()
            g.replay()
            end.record()
            end.synchronize()
            samples[name].append(start.elapsed_time(end) * 1000.0 / CALLS_PER_GRAPH)
    out = {}
    for name, s in samples.items():
        q = statistics.quantiles(s, n=4)
        out[name] = dict(us=statistics.median(s), iqr_us=q[2] - q[0], samples=s)
    return out


class Shape:
    """Inputs of one batch size with COLD_COPIES weight copies, and plans on them."""

    def __init__(self, m):
        self.m = m
        self.inputs = build_inputs(m)
        self.copies = [self.inputs.weights] + [
            self.inputs.weights.clone() for _ in range(COLD_COPIES - 1)
        ]

    def plans(self, cfg, copies=COLD_COPIES):
        from autotune.kernel import MoEPlan

        plans = [MoEPlan.create(self.inputs.with_weights(w), cfg) for w in self.copies[:copies]]
        for p in plans:
            p()
        return plans


def ours_graph(plans, cold):
    return capture(lambda i: plans[i % len(plans) if cold else 0].gemms())


def weight_bytes_touched(inputs) -> int:
    import torch

    w = inputs.weights
    touched = torch.unique(inputs.topk_ids).numel()
    per_expert = sum(t[0].numel() * t.element_size() for t in (w.w1, w.w2, w.w1_scale, w.w2_scale))
    return touched * per_expert


# --------------------------------------------------------------------------- sections


def env_record() -> dict:
    import torch
    import triton

    query = "name,clocks.sm,clocks.mem,clocks.max.sm,temperature.gpu,power.draw,power.limit"
    try:
        smi = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()  # fmt: skip
    except Exception as exc:
        smi = f"nvidia-smi failed: {exc}"
    return dict(
        time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        device=torch.cuda.get_device_name(),
        capability=".".join(map(str, torch.cuda.get_device_capability())),
        sms=torch.cuda.get_device_properties(0).multi_processor_count,
        torch=torch.__version__,
        triton=triton.__version__,
        python=platform.python_version(),
        nvidia_smi=smi,
    )


def peaks() -> dict:
    import torch

    out = {}
    n = 1 << 31  # 2 GiB
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def best_ms(fn, reps=10):
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    ms = best_ms(lambda: dst.copy_(src))
    out["copy_GBps_read_plus_write"] = 2 * n / ms / 1e6
    src = dst = None
    size = 8192
    a = torch.randn(size, size, device="cuda").to(torch.bfloat16)
    b = torch.randn(size, size, device="cuda").to(torch.bfloat16)
    ms = best_ms(lambda: a @ b)
    out["bf16_matmul_TFLOPs"] = 2 * size**3 / ms / 1e9
    try:
        a8 = a.to(torch.float8_e4m3fn)
        b8 = b.to(torch.float8_e4m3fn).t().contiguous().t()  # column-major, as _scaled_mm wants
        one = torch.ones((), device="cuda")
        ms = best_ms(lambda: torch._scaled_mm(a8, b8, one, one, out_dtype=torch.bfloat16))
        out["fp8_matmul_TFLOPs"] = 2 * size**3 / ms / 1e9
    except Exception as exc:
        out["fp8_matmul_error"] = str(exc)[:200]
    return out


def pick_parity_configs(table) -> list[dict]:
    ok = sorted((r for r in table["results"] if r["us"] is not None), key=lambda r: r["us"])
    best = ok[:20]
    rest = ok[20:]
    step = max(1, len(rest) // 20)
    spread = rest[step // 2 :: step][:20]
    return [dict(r["config"], rank=ok.index(r) + 1, table_us=r["us"]) for r in best + spread]


def swap_applies(cfg) -> bool:
    return cfg["BLOCK_SIZE_M"] < 64 and cfg["BLOCK_SIZE_N"] >= 64


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--tables", required=True, help="folder with the moe-grid-table/1 files")
    parser.add_argument("--vllm-kernel", default=None, help="vllm_kernel.py (same-card baseline)")
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    results: dict = {"method": __doc__.split("Timing")[1].strip(), "errors": {}}

    def save():
        (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))

    import torch

    from autotune.kernel import KERNEL_VERSION

    results["env_start"] = env_record()
    results["kernel_version"] = KERNEL_VERSION
    log("device", results["env_start"]["device"], results["env_start"]["nvidia_smi"])
    tables = {}
    for m in ROOFLINE_M:
        path = Path(args.tables) / f"NVIDIA_H200_E256_N512_K2048_fp8block_M{m}.json"
        if path.exists():
            tables[m] = json.loads(path.read_text())
    parity_cfgs = pick_parity_configs(tables[64])
    best_cfg = {
        m: min((r for r in t["results"] if r["us"] is not None), key=lambda r: r["us"])["config"]
        for m, t in tables.items()
    }
    small_cfgs = [best_cfg[1], best_cfg[16]] + SWAP_CONFIGS
    small_cfgs = [c for i, c in enumerate(small_cfgs) if c not in small_cfgs[:i]]

    # Compile jobs: (kind, M, config).
    jobs = []
    for c in parity_cfgs:
        cfg = {k: c[k] for k in CONFIG_KEYS}
        jobs.append(("ours", 64, cfg))
        if args.vllm_kernel:
            jobs.append(("vllm", 64, cfg))
        if swap_applies(cfg) and c["rank"] <= 20:
            jobs.append(("ours", 64, dict(cfg, SWAP_AB=True)))
    for m, cfg in best_cfg.items():
        jobs.append(("ours", m, cfg))
    for m in SWAP_M:
        for cfg in small_cfgs:
            jobs += [("ours", m, cfg), ("ours", m, dict(cfg, SWAP_AB=True))]

    # 1. Tests in the background while the benchmark kernels compile.
    test_procs = []
    if not args.skip_tests:
        env = dict(os.environ, TRITON_INTERPRET="0")
        selections = [
            ["tests/kernel/test_fused_moe.py", "-k", "matches_reference"],
            ["tests/kernel/test_fused_moe.py", "-k", "not matches_reference"],
            ["tests/kernel/test_align.py", "tests/kernel/test_inputs.py"],
        ]
        for i, sel in enumerate(selections):
            f = open(out_dir / f"pytest_{i}.txt", "w")
            cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *sel]
            test_procs.append(
                (subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env), f)
            )
    t0 = time.time()
    done, failures = compile_all(jobs, args.vllm_kernel, args.workers)
    failed = {"|".join(map(str, k)): v for k, v in failures.items()}
    results["compile"] = dict(jobs=len(jobs), done=done, seconds=time.time() - t0, failures=failed)
    log(f"compiled {done}/{len(jobs)} jobs in {time.time() - t0:.0f}s, {len(failures)} failed")
    t0 = time.time()
    test_summary = []
    for p, f in test_procs:
        try:
            p.wait(timeout=max(1, 420 - (time.time() - t_start)))
        except subprocess.TimeoutExpired:
            p.kill()
            f.write("\nKILLED: the test run took too long\n")
        f.close()
    for i in range(len(test_procs)):
        text = (out_dir / f"pytest_{i}.txt").read_text()
        test_summary.append(text.strip().splitlines()[-1] if text.strip() else "no output")
    results["tests"] = test_summary
    log("tests:", test_summary, f"(waited {time.time() - t0:.0f}s more)")
    # Merge the test logs into one file (the run returns at most 8 files).
    merged = "".join(f"==== {i}\n" + (out_dir / f"pytest_{i}.txt").read_text()
                     for i in range(len(test_procs)))  # fmt: skip
    for i in range(len(test_procs)):
        (out_dir / f"pytest_{i}.txt").unlink()
    (out_dir / "pytest_gpu.txt").write_text(merged)
    save()

    launch = load_vllm_kernel(args.vllm_kernel)

    # 2. Parity at M=64 (hot L2, the table's method), ours vs vLLM's kernel interleaved.
    try:
        shape = Shape(64)
        rows = []
        for c in parity_cfgs:
            cfg = {k: c[k] for k in CONFIG_KEYS}
            row = dict(config=cfg, rank=c["rank"], table_us=c["table_us"])
            if failures.get(("ours", 64, key_of(cfg))):
                row["error"] = failures[("ours", 64, key_of(cfg))]
                rows.append(row)
                continue
            try:
                plans = shape.plans(cfg, copies=1)
                graphs = {"ours": ours_graph(plans, cold=False)}
                if launch is not None:
                    c1, c3 = torch.empty_like(plans[0].cache1), torch.empty_like(plans[0].cache3)
                    graphs["vllm"] = capture(
                        lambda i, p=plans[0], c1=c1, c3=c3: vllm_gemms(launch, p, c1, c3))
                    plans[0].gemms()
                    torch.cuda.synchronize()
                    row["max_abs_diff_vs_vllm"] = max(
                        (c1.float() - plans[0].cache1.float()).abs().max().item(),
                        (c3.float() - plans[0].cache3.float()).abs().max().item(),
                    )
                if swap_applies(cfg) and c["rank"] <= 20:
                    swap_plans = shape.plans(dict(cfg, SWAP_AB=True), copies=1)
                    graphs["ours_swap"] = ours_graph(swap_plans, cold=False)
                timed = time_interleaved(graphs)
                for name, t in timed.items():
                    row[f"{name}_us"], row[f"{name}_iqr_us"] = t["us"], t["iqr_us"]
                if "vllm_us" in row:
                    row["ratio_ours_vs_vllm"] = row["ours_us"] / row["vllm_us"]
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            rows.append(row)
            log(
                "parity",
                c["rank"],
                {k: v for k, v in row.items() if k.endswith("us") or k.startswith("ratio")},
            )
        results["parity_M64"] = rows
        shape = None
    except Exception:
        results["errors"]["parity"] = traceback.format_exc()
    save()
    torch.cuda.empty_cache()

    # 3. Roofline.
    try:
        results["peaks"] = peaks()
        log("peaks", results["peaks"])
        roof = []
        for m, cfg in best_cfg.items():
            shape = Shape(m)
            plans = shape.plans(cfg)
            timed = time_interleaved(
                {"hot": ours_graph(plans, False), "cold": ours_graph(plans, True)}
            )
            # Whole call (align + quant + GEMMs + activation + sum) in a graph: also proves the
            # call needs no host synchronization.
            whole = time_interleaved({"whole": capture(lambda i, p=plans[0]: p())})["whole"]
            nbytes = weight_bytes_touched(shape.inputs)
            flops = 2 * m * SHAPE["topk"] * (2 * SHAPE["N"] * SHAPE["K"] + SHAPE["K"] * SHAPE["N"])
            table_best = min(r["us"] for r in tables[m]["results"] if r["us"] is not None)
            row = dict(M=m, config=cfg, table_best_us=table_best, weight_MB_touched=nbytes / 1e6,
                       whole_call_hot_us=whole["us"])  # fmt: skip
            for mode, t in timed.items():
                row[f"{mode}_us"], row[f"{mode}_iqr_us"] = t["us"], t["iqr_us"]
                row[f"{mode}_weight_GBps"] = nbytes / t["us"] / 1e3
                row[f"{mode}_TFLOPs"] = flops / t["us"] / 1e6
            roof.append(row)
            log("roofline", {k: v for k, v in row.items() if k != "config"})
            shape = plans = None
            torch.cuda.empty_cache()
        results["roofline"] = roof
    except Exception:
        results["errors"]["roofline"] = traceback.format_exc()
    save()

    # 4. Swap-AB on vs off at small M, hot and cold.
    try:
        rows = []
        for m in SWAP_M:
            shape = Shape(m)
            for cfg in small_cfgs:
                off, on = shape.plans(cfg), shape.plans(dict(cfg, SWAP_AB=True))
                timed = time_interleaved({
                    "off_hot": ours_graph(off, False), "on_hot": ours_graph(on, False),
                    "off_cold": ours_graph(off, True), "on_cold": ours_graph(on, True),
                })  # fmt: skip
                row = dict(M=m, config=cfg, **{f"{k}_us": v["us"] for k, v in timed.items()},
                           **{f"{k}_iqr_us": v["iqr_us"] for k, v in timed.items()})  # fmt: skip
                row["on_vs_off_hot"] = row["on_hot_us"] / row["off_hot_us"]
                row["on_vs_off_cold"] = row["on_cold_us"] / row["off_cold_us"]
                rows.append(row)
                log(
                    "swap",
                    m,
                    key_of(cfg),
                    round(row["on_vs_off_hot"], 3),
                    round(row["on_vs_off_cold"], 3),
                )
            shape = off = on = None
            torch.cuda.empty_cache()
        results["swap_ab"] = rows
    except Exception:
        results["errors"]["swap_ab"] = traceback.format_exc()
    results["env_end"] = env_record()
    save()
    log("done")


if __name__ == "__main__":
    main()
