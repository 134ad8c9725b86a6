"""Record the compiled-resource tables shipped in autotune/resource_tables/, on a CPU machine.

Compiles both MoE GEMMs of every distinct config of the vllm search space (GROUP_SIZE_M does not
change the binary) for each target architecture and dtype, with the Triton installed here, and
reads shared memory, registers and local memory (autotune.kernel.targets). Progress goes to a JSONL
file per table first, so an interrupted run resumes where it stopped; the package table is written
when every config is in.

    PYTHONPATH=. python benchmarks/resources/record_tables.py --arch 120 100 --dtype fp8_block bf16
"""

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"  # before triton is imported

import triton  # noqa: E402
import yaml  # noqa: E402

from autotune.kernel.launch import KernelCompileError  # noqa: E402
from autotune.kernel.targets import compile_gemms  # noqa: E402
from autotune.problem.resources import TABLE_DIR, TABLE_FORMAT, RESOURCE_KEYS, table_name  # noqa: E402
from autotune.problem.space import block_quant_violation  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# The opt-in shared memory per block of each architecture's GPUs (conf/device): configs whose
# fewer-stage sibling already exceeds it are not compiled (more stages only add buffers).
SHARED_LIMIT = {120: 101376, 100: 232448, 90: 232448, 89: 101376, 80: 166912}
VARIANTS = {"bf16": ("bf16", None), "fp8_block": ("fp8_w8a8", (128, 128)), "fp8": ("fp8_w8a8", None)}


def space_configs(block_shape):
    params = yaml.safe_load((ROOT / "search_spaces" / "vllm.yaml").read_text())["params"]
    for values in itertools.product(*(params[k] for k in RESOURCE_KEYS)):
        cfg = dict(zip(RESOURCE_KEYS, values))
        if not block_quant_violation(cfg, block_shape):
            yield cfg


def record(arch: int, variant: str, progress_dir: Path) -> None:
    dtype, block_shape = VARIANTS[variant]
    capability = (arch // 10, arch % 10)
    name = table_name(capability, dtype, block_shape)
    progress = progress_dir / f"{name}.jsonl"
    done = {}
    if progress.exists():
        for line in progress.read_text().splitlines():
            row = json.loads(line)
            done[tuple(row[k] for k in RESOURCE_KEYS)] = row
    configs = list(space_configs(block_shape))
    start = time.monotonic()
    with progress.open("a") as out:
        for i, cfg in enumerate(configs):
            key = tuple(cfg[k] for k in RESOURCE_KEYS)
            if key in done:
                continue
            row = dict(cfg)
            fewer = done.get(key[:-1] + (cfg["num_stages"] - 1,))
            fewer_shared = fewer and (fewer.get("shared_over_limit") or max(
                fewer.get(g, {}).get("shared", 0) for g in ("gemm1", "gemm2")))
            if fewer_shared and fewer_shared > SHARED_LIMIT[arch]:
                # Recorded, not compiled: num_stages - 1 already needs more than the limit.
                row["shared_over_limit"] = fewer_shared
                out.write(json.dumps(row) + "\n")
                done[key] = row
                continue
            try:
                g1, g2 = compile_gemms({**cfg, "GROUP_SIZE_M": 1}, dtype=dtype,
                                       block_shape=block_shape, capability=capability)
                row.update(gemm1=g1.as_dict(), gemm2=g2.as_dict())
            except KernelCompileError as exc:
                row["error"] = str(exc)
            out.write(json.dumps(row) + "\n")
            out.flush()
            done[key] = row
            print(f"{name} {i + 1}/{len(configs)} {time.monotonic() - start:.0f}s", flush=True)
    table = {"format": TABLE_FORMAT, "target": f"sm_{arch}", "dtype": dtype,
             "block_shape": list(block_shape) if block_shape else None,
             "triton_version": triton.__version__, "shared_limit": SHARED_LIMIT[arch],
             "layer": "E=256 N=512 K=2048 top-8, M=256 (only Triton's integer specializations depend on it)",
             "configs": [done[tuple(c[k] for k in RESOURCE_KEYS)] for c in configs]}
    (TABLE_DIR / f"{name}.json").write_text(json.dumps(table, indent=0) + "\n")
    print(f"wrote {TABLE_DIR / name}.json ({len(configs)} configs)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", type=int, nargs="+", default=[120, 100])
    p.add_argument("--dtype", nargs="+", default=["fp8_block", "bf16"], choices=sorted(VARIANTS))
    p.add_argument("--progress-dir", type=Path, default=ROOT / "benchmarks" / "resources" / "progress")
    args = p.parse_args()
    args.progress_dir.mkdir(parents=True, exist_ok=True)
    for variant, arch in itertools.product(args.dtype, args.arch):
        record(arch, variant, args.progress_dir)


if __name__ == "__main__":
    sys.exit(main())
