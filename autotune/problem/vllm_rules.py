"""vLLM's runtime rules for the fused-MoE Triton kernel: what vLLM runs for a config file entry.

One copy of each rule, pinned to the vLLM version it was read from (:data:`VLLM_VERSION`), so that
what the tuner times, compares and writes is what vLLM serves. Each function names the vLLM
function whose behaviour it encodes (all in ``vllm/model_executor/layers/fused_moe/``); the tests
in ``tests/test_vllm_rules.py`` hold one table per rule. Pure Python, importable everywhere: the
kernel, the benchmarkers, the search and the file writer all ask this module.

- :func:`swap_ab`: the kernel variant (A and B swapped in the tile) vLLM picks by itself;
- :func:`uses_tensor_descriptors`: the opt-in tensor-descriptor path (never timed here);
- :func:`block_size_k`: the BLOCK_SIZE_K clamp under block quantization;
- :func:`naive_assignment` and :func:`grid_rows`: the small-M shortcuts;
- :func:`nearest_key`: which file entry serves M tokens;
- :func:`default_config`: what vLLM runs without a file;
- :func:`config_device` and :func:`never_read`: which file vLLM looks up, and which it never reads;
- :func:`ties_to_larger_key`, :func:`launch_keys`, :func:`snap_flydsl_tiles`: how a file's keys and
  entries run (file order on a tie, keys passed to the Triton launch, FlyDSL's registered tiles).
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Mapping, Optional, Sequence

VLLM_VERSION = "0.33.0"

Capability = Optional[tuple[int, int]]  # CUDA compute capability; None: no GPU (interpreter)

# `_prepare_expert_assignment` (fused_moe.py): skip alignment when
# M * top_k * SPARSITY_FACTOR <= global experts.
SPARSITY_FACTOR = 4


def swap_ab(config: Mapping[str, int], dtype: str, capability: Capability) -> bool:
    """Whether vLLM runs this entry with SWAP_AB (its files have no such key).

    ``invoke_fused_moe_triton_kernel`` (fused_moe.py): only when ``use_fp8_w8a8`` (per-tensor or
    block fp8); then ``enable_swap_ab`` (utils.py): device capability exactly 9.0, BLOCK_SIZE_M
    < 64 and BLOCK_SIZE_N >= 64. bf16, fp16 and int8_w8a16 never swap.
    """
    return (dtype == "fp8_w8a8" and capability is not None and tuple(capability) == (9, 0)
            and int(config["BLOCK_SIZE_M"]) < 64 and int(config["BLOCK_SIZE_N"]) >= 64)


def uses_tensor_descriptors(dtype: str, capability: Capability, use_td_env: Optional[str]) -> bool:
    """Whether vLLM would take the tensor-descriptor (TMA gather) path of its kernel.

    ``resolve_moe_use_td`` (utils.py): off on CUDA unless ``VLLM_TRITON_USE_TD=1``;
    ``invoke_fused_moe_triton_kernel``: never for quantized weights; ``moe_use_td_hw_supported``:
    compiles only on capability >= 10.0. Our kernel has no such path, so a tune for a setup where
    this is True times a kernel vLLM does not run there; the report says so.
    """
    forced = use_td_env is not None and use_td_env.strip().lower() in ("1", "true")
    unquantized = dtype in ("bf16", "fp16")
    return forced and unquantized and capability is not None and tuple(capability) >= (10, 0)


def block_size_k(config_block_k: int, block_shape: Optional[tuple[int, int]]) -> int:
    """The BLOCK_SIZE_K the kernel runs: ``invoke_fused_moe_triton_kernel`` lowers it to
    min(BLOCK_SIZE_K, block_n, block_k) under block quantization (256 runs as 128)."""
    if block_shape is None:
        return int(config_block_k)
    return min(int(config_block_k), *block_shape)


# `refine_fp8_moe_block_shape` (fused_moe/oracle/fp8.py) refines blocks down to this size at most.
MIN_REFINED_BLOCK = 32


def refined_block_shape(block: tuple[int, int], N: int, K: int,
                        tp: int) -> Optional[tuple[int, int]]:
    """The fp8 quantization block vLLM runs a TP shard with (and so its file name holds), or
    None where vLLM refuses the split.

    ``refine_fp8_moe_block_shape``: a shard that is not whole blocks (N % block_n, or N % block_k
    under tp) gets [g, g] blocks, g = gcd(block_n, block_k, N, K), when g >= 32.
    """
    block_n, block_k = block
    if N % block_n == 0 and (tp == 1 or N % block_k == 0):
        return block
    refined = math.gcd(block_n, block_k, N, K)
    return (refined, refined) if refined >= MIN_REFINED_BLOCK else None


def kernel_config(config: Mapping[str, int]) -> dict[str, int]:
    """An entry's six tile parameters as ints, other keys dropped (what the kernel takes)."""
    return {k: int(config[k]) for k in CONFIG_KEYS}


def runs_as(config: Mapping[str, int], block_shape: Optional[tuple[int, int]]) -> dict[str, int]:
    """A file entry's six tile parameters as the kernel runs them (BLOCK_SIZE_K clamped)."""
    out = kernel_config(config)
    out["BLOCK_SIZE_K"] = block_size_k(out["BLOCK_SIZE_K"], block_shape)
    return out


def naive_assignment(num_pairs: int, num_experts: int, *, expert_map: bool = False) -> bool:
    """vLLM's small-M shortcut of one (token, slot) pair per row block, no alignment.

    ``_prepare_expert_assignment`` (fused_moe.py): no expert map and num_tokens * top_k * 4 <=
    global experts, num_pairs being num_tokens * top_k (and weights not host-resident; the
    int4/int8 w*a16 block kernels, never: not kernels of this project).
    """
    return not expert_map and num_pairs * SPARSITY_FACTOR <= num_experts


def grid_rows(padded_rows: int, rows_a: int, top_k: int, block_size_m: int) -> int:
    """Rows (EM) of a launch's grid over aligned routing.

    ``invoke_fused_moe_triton_kernel``: with fewer A rows than BLOCK_SIZE_M at most rows_a * top_k
    row blocks hold pairs, so the grid stops there.
    """
    if rows_a < block_size_m:
        return min(padded_rows, rows_a * top_k * block_size_m)
    return padded_rows


def nearest_key(keys: Iterable[int], M: int) -> int:
    """The file key that serves M tokens: ``try_get_optimal_moe_config`` takes
    ``min(keys, key=|key - M|)`` over the keys in file order, so a tie goes to the key written
    first (the smaller one in an ascending file)."""
    return min(keys, key=lambda key: abs(key - M))


def nearest_entry(entries: Mapping[int, Mapping[str, int]], M: int) -> dict[str, int]:
    """The entry vLLM takes from a file's entries (keys in file order) for M tokens."""
    return dict(entries[nearest_key(entries, M)])


def default_config(M: int, E: int, dtype: str,
                   block_shape: Optional[tuple[int, int]]) -> dict[str, int]:
    """vLLM's ``get_default_config`` (fused_moe.py) on CUDA: what runs without a tuned file."""
    if dtype == "fp8_w8a8" and block_shape is not None:
        # Block fp8: a 64-wide N tile at decode sizes when it divides the quantization block.
        small = M <= 8 and block_shape[0] % 64 == 0
        return {
            "BLOCK_SIZE_M": 16 if M <= 64 else 64,
            "BLOCK_SIZE_N": 64 if small else block_shape[0],
            "BLOCK_SIZE_K": block_shape[1],
            "GROUP_SIZE_M": 1 if M <= 16 else 32,
            "num_warps": 4,
            "num_stages": (4 if M <= 4 else 3) if small else 3,
        }
    # bf16/fp16, fp8 per-tensor and int8_w8a16 (no block).
    if M <= 32:
        block_m = 16
    elif M <= 96:
        block_m = 32
    elif M <= 512:
        block_m = 64
    else:
        block_m = 128
    return {
        "BLOCK_SIZE_M": block_m,
        "BLOCK_SIZE_N": 64 if M <= 64 else 128,
        "BLOCK_SIZE_K": 128 if dtype == "fp8_w8a8" or M <= 64 else 64,
        "GROUP_SIZE_M": 16 if M // max(E, 1) > 128 else 1,
        "num_warps": 4 if M <= 128 else 8,
        "num_stages": 4 if M <= 32 else 3,
    }


# The six keys of a file entry (``get_default_config`` adds SPLIT_K=1, which files do not hold).
CONFIG_KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps",
               "num_stages")


# -- which file vLLM reads -------------------------------------------------------------------------
# The dtype tokens of `_get_config_dtype_str` (config.py), the only source of the dtype in a looked-up
# name: fp8_w8a8, fp8_w8a16, int8_w8a16, int4_w4a16 by the quantization flags, float32 for float32
# activations, and none at all for bf16/fp16, int8_w8a8 and OCP MX.
CONFIG_DTYPES = ("fp8_w8a8", "fp8_w8a16", "int8_w8a16", "int4_w4a16", "float32")

# FlyDSL's int4 kernel (fused_flydsl_moe.py) looks up its own files: the only other backend.
FLYDSL = "flydsl"


def device_file_name(device_name: str) -> str:
    """``get_device_name_as_file_name`` (vllm/utils/platform_utils.py): the platform's device name
    with each run of whitespace and '/' replaced by one '_'."""
    return re.sub(r"[\s/]+", "_", device_name)


def config_device(device_name: str) -> str:
    """The device_name token ``get_config_file_name`` (fused_moe.py) looks up: the device's file
    name, NVIDIA_H200 for every device with the word H200 in it (H200 NVL: yes, GH200: no)."""
    token = device_file_name(device_name)
    return "NVIDIA_H200" if "H200" in token.split("_") else token


def never_read(device: str, dtype: Optional[str], block_shape: Optional[tuple[int, int]],
               backend: Optional[str] = None) -> list[str]:
    """Why vLLM never reads a file named with these tokens, one reason per rule; [] when it reads
    it (for the E and N of the name) on a device of that name.

    backend None: the Triton kernel's file (``get_moe_configs`` looks up ``get_config_file_name``);
    "flydsl": FlyDSL's (``try_get_optimal_config`` in fused_flydsl_moe.py).
    """
    out = []
    if device_file_name(device) != device:
        out.append(f"device_name={device!r} has spaces: get_device_name_as_file_name turns spaces "
                   f"and '/' into '_', so the token is {device_file_name(device)!r}")
    if device == "cpu":
        out.append("device_name=cpu is a CPU smoke run's file (Triton's interpreter): "
                   "get_device_name_as_file_name names CUDA devices only")
    if backend is None:
        if "H200" in device.split("_") and device != "NVIDIA_H200":
            out.append(f"get_config_file_name looks up every H200 as NVIDIA_H200, never as "
                       f"{device}")
        if dtype is not None and dtype not in CONFIG_DTYPES:
            out.append(f"_get_config_dtype_str never gives dtype={dtype}{_DTYPE_HINTS.get(dtype, '')}"
                       f"; its tokens: {', '.join(CONFIG_DTYPES)}")
        if block_shape is not None and not all(block_shape):
            out.append("get_config_file_name leaves out a block_shape with a zero")
    elif backend == FLYDSL:
        if dtype != "int4_w4a16" or block_shape is not None:
            out.append("try_get_optimal_config (fused_flydsl_moe.py) looks up FlyDSL files only as "
                       "E=..,N=..,device_name=..,dtype=int4_w4a16,backend=flydsl.json")
    else:
        out.append(f"no vLLM lookup names a backend={backend} file: get_config_file_name names "
                   f"none, FlyDSL's try_get_optimal_config only backend=flydsl")
    return out


_DTYPE_HINTS = {
    "bf16": " (bf16 and fp16 files carry no dtype token)",
    "fp16": " (bf16 and fp16 files carry no dtype token)",
    "int8_w8a8": " (int8_w8a8 looks up the name without a dtype token)",
}


# -- how a file's keys and entries run -------------------------------------------------------------
def ties_to_larger_key(keys: Sequence[int]) -> list[tuple[int, int]]:
    """(M, key) for each M midway between two neighbouring keys that vLLM serves with the larger
    one: ``try_get_optimal_moe_config`` takes the first nearest key in file order, so only a file
    whose keys are not ascending has any. Order matters nowhere else."""
    ordered = sorted(set(keys))
    return [((a + b) // 2, b) for a, b in zip(ordered, ordered[1:])
            if (a + b) % 2 == 0 and nearest_key(keys, (a + b) // 2) == b]


# ``invoke_fused_moe_triton_kernel`` passes every key of an entry to the Triton launch
# (``fused_moe_kernel[grid](..., **config)``), BLOCK_SIZE_K clamped and SPLIT_K set to 1. Besides the
# kernel's parameters Triton takes its launch options there, each platform its own, and rejects any
# other keyword. Files for AMD and Intel GPUs carry their platforms' options.
SPLIT_K = 1
LAUNCH_OPTIONS = {
    "CUDA": ("num_ctas", "maxnreg"),
    "ROCm": ("waves_per_eu", "matrix_instr_nonkdim", "kpack"),
    "XPU": ("grf_mode",),
}


def platform(device: str) -> Optional[str]:
    """The platform reading files of this device token: CUDA for an NVIDIA GPU (NVML names start
    with NVIDIA), None where not known here (AMD and Intel GPUs)."""
    return "CUDA" if device.startswith("NVIDIA") else None


def launch_keys(device: str) -> tuple[str, ...]:
    """The launch options a file entry for this device may carry: its platform's, or any
    platform's where the platform is not known."""
    known = platform(device)
    if known is not None:
        return LAUNCH_OPTIONS[known]
    return tuple(k for keys in LAUNCH_OPTIONS.values() for k in keys)


# FlyDSL's entries: five tiles (fused_flydsl_moe_impl reads these keys and no other), each snapped
# by `_snap_flydsl_int4_tiles` to the nearest tile its kernels register (the smaller on a tie).
FLYDSL_TILES = {
    "tile_m": (16, 32, 64, 128),
    "tile_n": (64, 128),
    "tile_k": (128, 256),
    "tile_n2": (128,),
    "tile_k2": (128, 256),
}


def snap_flydsl_tiles(entry: Mapping[str, int]) -> dict[str, int]:
    """The tiles FlyDSL's int4 kernel runs for a file entry (``_snap_flydsl_int4_tiles``)."""
    return {k: min(allowed, key=lambda a: (abs(a - int(entry[k])), a))
            for k, allowed in FLYDSL_TILES.items()}
