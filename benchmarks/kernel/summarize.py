"""Turn a gpu_run.py results.json into the markdown tables committed beside it.

python benchmarks/kernel/summarize.py benchmarks/kernel/results/<run>/results.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def short(cfg: dict) -> str:
    parts = [cfg["BLOCK_SIZE_M"], cfg["BLOCK_SIZE_N"], cfg["BLOCK_SIZE_K"], cfg["GROUP_SIZE_M"],
             cfg["num_warps"], cfg["num_stages"]]  # fmt: skip
    return "/".join(map(str, parts))


def fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def summarize(results: dict) -> str:
    env = results.get("env_start", {})
    lines = [
        "# Fused-MoE kernel on the GPU",
        "",
        f"- card: {env.get('device')} (sm {env.get('capability')}, {env.get('sms')} SMs); "
        f"torch {env.get('torch')}, Triton {env.get('triton')}, Python {env.get('python')}",
        f"- date (UTC): {env.get('time_utc')}; kernel {results.get('kernel_version')}",
        f"- nvidia-smi at start: `{env.get('nvidia_smi')}`",
        f"- nvidia-smi at end: `{results.get('env_end', {}).get('nvidia_smi')}`",
        "- shape: E=256 N=512 K=2048 top-8, fp8_w8a8 block [128,128] (Qwen3.5-35B-A3B-FP8, TP1)",
        f"- method: {results.get('method')}",
        "- configs are written BLOCK_SIZE_M/N/K/GROUP_SIZE_M/num_warps/num_stages",
        "",
        "## Correctness (TRITON_INTERPRET=0, tests/kernel)",
        "",
    ]
    lines += [f"- {t}" for t in results.get("tests", [])]
    comp = results.get("compile", {})
    lines += ["", f"Compiled {comp.get('done')}/{comp.get('jobs')} config jobs in "
              f"{fmt(comp.get('seconds'), 0)} s (worker processes); failures: "
              f"{len(comp.get('failures', {}))}"]  # fmt: skip
    for key, err in comp.get("failures", {}).items():
        lines.append(f"- {key}: {err[:160]}")

    rows = results.get("parity_M64", [])
    if rows:
        table_comparable = "H200" in str(env.get("device"))
        lines += [
            "",
            "## Speed parity at M=64 (GEMM1 + GEMM2, hot L2)",
            "",
            "`ours/vLLM` compares with vLLM's `fused_moe_kernel` (commit 13cb3e4) on the same card,"
            " graphs replayed alternately. `table` is the recorded H200 sweep (vLLM 0.33.0 kernel)"
            + ("." if table_comparable else "; this card is not an H200, so it is not comparable."),
            "",
            "| rank | config | table us | ours us (IQR) | vLLM us (IQR) | ours/vLLM | swap-AB us |"
            " swap/ours | max abs diff |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['rank']} | {short(r['config'])} | {fmt(r['table_us'])} | "
                             f"error: {r['error'][:80]} | | | | | |")  # fmt: skip
                continue
            swap = r.get("ours_swap_us")
            lines.append(
                f"| {r['rank']} | {short(r['config'])} | {fmt(r['table_us'])} | "
                f"{fmt(r.get('ours_us'))} ({fmt(r.get('ours_iqr_us'))}) | "
                f"{fmt(r.get('vllm_us'))} ({fmt(r.get('vllm_iqr_us'))}) | "
                f"{fmt(r.get('ratio_ours_vs_vllm'), 3)} | {fmt(swap)} | "
                f"{fmt(swap / r['ours_us'] if swap else None, 3)} | "
                f"{fmt(r.get('max_abs_diff_vs_vllm'), 4)} |"
            )
        best = [r for r in rows if r["rank"] <= 20 and "ratio_ours_vs_vllm" in r]
        rest = [r for r in rows if r["rank"] > 20 and "ratio_ours_vs_vllm" in r]
        swaps = [r["ours_swap_us"] / r["ours_us"] for r in rows if r.get("ours_swap_us")]
        lines += [
            "",
            f"- geometric mean ours/vLLM, best 20: "
            f"{fmt(geomean([r['ratio_ours_vs_vllm'] for r in best]), 4)}; spread 20: "
            f"{fmt(geomean([r['ratio_ours_vs_vllm'] for r in rest]), 4)}",
            f"- geometric mean ours/table, best 20: "
            f"{fmt(geomean([r['ours_us'] / r['table_us'] for r in best]), 4)}",
            f"- geometric mean swap-AB on/off, best 20: {fmt(geomean(swaps), 4)}",
        ]  # fmt: skip

    peaks = results.get("peaks")
    roof = results.get("roofline", [])
    if roof:
        lines += [
            "",
            "## Roofline (the M=<m> table's best config, our kernel, swap-AB off)",
            "",
            f"Measured ceilings: device copy {fmt(peaks.get('copy_GBps_read_plus_write'), 0)} GB/s "
            f"(read + write of 2 GiB), bf16 matmul {fmt(peaks.get('bf16_matmul_TFLOPs'), 0)} "
            f"TFLOP/s, fp8 matmul {fmt(peaks.get('fp8_matmul_TFLOPs'), 0)} TFLOP/s (8192^3).",
            "Weight bytes = experts touched x (w1 + w2 + scales); hot = same weights in all 10"
            " calls, cold = 4 rotated copies. Whole call = align + quant + GEMMs + activation +"
            " sum, captured in one graph.",
            "",
            "| M | config | table us | hot us | cold us | weights MB | hot GB/s | cold GB/s |"
            " cold % of copy | TFLOP/s (hot) | whole call hot us |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        copy = peaks.get("copy_GBps_read_plus_write") or float("nan")
        for r in roof:
            lines.append(
                f"| {r['M']} | {short(r['config'])} | {fmt(r['table_best_us'])} | "
                f"{fmt(r['hot_us'])} | {fmt(r['cold_us'])} | {fmt(r['weight_MB_touched'], 0)} | "
                f"{fmt(r['hot_weight_GBps'], 0)} | {fmt(r['cold_weight_GBps'], 0)} | "
                f"{fmt(100 * r['cold_weight_GBps'] / copy, 0)} | {fmt(r['hot_TFLOPs'], 0)} | "
                f"{fmt(r['whole_call_hot_us'])} |"
            )

    swap_rows = results.get("swap_ab", [])
    if swap_rows:
        lines += [
            "",
            "## Swap-AB on vs off (our kernel)",
            "",
            "| M | config | off hot us | on hot us | on/off hot | off cold us | on cold us |"
            " on/off cold |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in swap_rows:
            lines.append(
                f"| {r['M']} | {short(r['config'])} | {fmt(r['off_hot_us'])} | "
                f"{fmt(r['on_hot_us'])} | {fmt(r['on_vs_off_hot'], 3)} | {fmt(r['off_cold_us'])} | "
                f"{fmt(r['on_cold_us'])} | {fmt(r['on_vs_off_cold'], 3)} |"
            )
    for section, error in results.get("errors", {}).items():
        lines += ["", f"## Error in {section}", "", "```", error[-2000:], "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    path = Path(sys.argv[1])
    out = path.with_name("results.md")
    out.write_text(summarize(json.loads(path.read_text())))
    print(out)
