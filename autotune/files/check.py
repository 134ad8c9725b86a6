"""Checking a config file as vLLM reads it: its name, its keys, every entry (`python -m autotune.check`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from autotune.files.names import SGLANG_DTYPE_TOKENS, device_token, parse_file_name
from autotune.problem import vllm_rules
from autotune.problem.vllm_rules import CONFIG_KEYS


# -- validation (the check command) --------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    level: str  # "error": vLLM never reads, fails on or misreads it; "warning": runs, not as written
    where: str  # the file name, or the entry key
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


def check_file(path: Path) -> list[Finding]:
    """vLLM's lookup and runtime rules (SGLang's, for an SGLang-named file) for a config file, as
    findings: an error where vLLM never reads the file, fails on it or misreads it, a warning
    where it runs an entry otherwise than written. Each names the vLLM function that does so."""
    path = Path(path)
    name = path.name
    parsed = parse_file_name(name)
    if parsed is None:
        return [Finding("error", name, "name is not E={E},N={N},device_name={device}"
                        "[,dtype={dtype}][,block_shape=[{bn},{bk}]].json (get_config_file_name) "
                        "nor FlyDSL's ...,dtype=int4_w4a16,backend=flydsl.json")]
    findings = _check_name(name, parsed)
    repeated: list[str] = []
    try:
        data = json.loads(path.read_text(), object_pairs_hook=lambda pairs: _no_repeats(pairs,
                                                                                         repeated))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return findings + [Finding("error", name, f"not readable as JSON: {exc}; get_moe_configs "
                                                  f"fails on it (json.load)")]
    if not isinstance(data, dict):
        return findings + [Finding("error", name, "top level is not a JSON object: get_moe_configs "
                                                  "reads batch sizes from one")]
    findings += [Finding("warning", k, "key appears more than once; the last one is used "
                                       "(json.load in get_moe_configs)") for k in repeated]
    return findings + _check_entries(name, data, parsed)


def _no_repeats(pairs: list, repeated: list[str]) -> dict:
    seen: dict = {}
    for k, v in pairs:
        if k in seen:
            repeated.append(k)
        seen[k] = v
    return seen


def _check_name(name: str, parsed: dict) -> list[Finding]:
    """Errors where vLLM never looks the file up (SGLang's rules for an SGLang-named file)."""
    if parsed["flavor"] == "vllm":
        return [Finding("error", name, why) for why in vllm_rules.never_read(
            parsed["device"], parsed["dtype"], parsed["block_shape"], parsed["backend"])]
    out = []
    device, dtype = parsed["device"], parsed["dtype"]
    if " " in device:
        out.append(Finding("error", name, f"device_name={device!r} has spaces; the token is "
                                          f"{device_token(device, 'sglang')!r}"))
    if dtype is not None and dtype not in SGLANG_DTYPE_TOKENS:
        out.append(Finding("error", name, f"dtype={dtype} is never looked up; known: "
                                          f"{', '.join(SGLANG_DTYPE_TOKENS)}"))
    if parsed["block_shape"] is not None and dtype is None:
        out.append(Finding("error", name, "block_shape without a dtype token is never looked up"))
    return out


def _check_entries(name: str, data: dict, parsed: dict) -> list[Finding]:
    out = []
    flydsl = parsed["backend"] == vllm_rules.FLYDSL
    if "triton_version" in data and parsed["flavor"] == "sglang":
        out.append(Finding("error", name, "an SGLang-named file must not hold triton_version: "
                                          "SGLang reads every key as a batch size"))
    if "triton_version" in data and flydsl:
        out.append(Finding("error", name, "a FlyDSL file must not hold triton_version: "
                                          "try_get_optimal_config reads every key as a batch size"))
    keys = [k for k in data if k != "triton_version"]
    if not keys:
        out.append(Finding("error", name, "no batch-size entries: try_get_optimal_moe_config runs "
                                          "vLLM's default config instead"))
    sizes = {}
    for k in keys:
        try:
            sizes[k] = int(k)
        except ValueError:
            out.append(Finding("error", k, "key is not a positive integer batch size: "
                                           "get_moe_configs fails on it (int(key))"))
            continue
        if str(sizes[k]) != k or sizes[k] < 1:
            out.append(Finding("warning", k, f"key is read as batch size {sizes[k]} "
                                             f"(int(key) in get_moe_configs)"))
    out.extend(_check_order(name, list(sizes.values())))
    block = parsed["block_shape"] if parsed["block_shape"] and all(parsed["block_shape"]) else None
    for k in sizes:
        if flydsl:
            out.extend(check_flydsl_entry(k, data[k]))
        else:
            out.extend(check_entry(k, data[k], block, parsed["device"]))
    return out


def _check_order(name: str, sizes: list[int]) -> list[Finding]:
    """Key order only decides ties between two keys equally near M; warn where that is not the
    smaller key, which is what an ascending file (and our nearest-key rule) gives."""
    ties = vllm_rules.ties_to_larger_key(sizes)
    if not ties:
        return []
    M, key = ties[0]
    smaller = max(s for s in sizes if s < key)
    more = f" (and {len(ties) - 1} more midpoints)" if len(ties) > 1 else ""
    return [Finding("warning", name, f"batch-size keys are not in ascending order: "
                                     f"try_get_optimal_moe_config takes the first nearest key in "
                                     f"file order, so M={M} runs the entry of {key}, not "
                                     f"{smaller}{more}")]


# Triton's tl.arange needs power-of-two tile sizes; a CTA's warp count must be one too.
_POWERS_OF_TWO = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "num_warps")
# Launch options with a default in Triton: an entry without one runs with that default.
_DEFAULTED = ("num_warps", "num_stages")


def check_entry(key: str, entry: object, block: Optional[tuple[int, int]],
                device: str = "") -> list[Finding]:
    """Findings for one entry of a Triton-kernel file for `device` (its device_name token; ""
    where not known). An entry with none is one the kernel runs exactly as written."""
    if not isinstance(entry, dict):
        return [Finding("error", key, "entry is not an object of kernel parameters: "
                                      "invoke_fused_moe_triton_kernel reads it as one")]
    out = []
    for p in CONFIG_KEYS:
        v = entry.get(p)
        if v is None and p in _DEFAULTED:
            out.append(Finding("warning", key, f"missing {p}: invoke_fused_moe_triton_kernel "
                                               f"launches with Triton's default"))
        elif v is None:
            out.append(Finding("error", key, f"missing {p}: invoke_fused_moe_triton_kernel "
                                             f"cannot launch fused_moe_kernel without it"))
        elif isinstance(v, bool) or not isinstance(v, int) or v < 1:
            out.append(Finding("error", key, f"{p}={v!r} is not a positive integer: "
                                             f"fused_moe_kernel cannot be launched with it"))
    out.extend(_check_other_keys(key, entry, device))
    if any(f.level == "error" for f in out):
        return out
    for p in _POWERS_OF_TWO:
        v = entry.get(p)
        if v is not None and v & (v - 1):
            out.append(Finding("error", key, f"{p}={v} is not a power of two: Triton cannot "
                                             f"compile fused_moe_kernel with it"))
    if block is None:
        return out
    block_n, block_k = block
    bk = entry["BLOCK_SIZE_K"]
    runs = vllm_rules.block_size_k(bk, block)
    if runs != bk:
        out.append(Finding("warning", key, f"BLOCK_SIZE_K={bk} runs as {runs} with block_shape "
                                           f"[{block_n},{block_k}] (invoke_fused_moe_triton_kernel)"))
    if block_k % runs:
        out.append(Finding("error", key, f"BLOCK_SIZE_K={runs} does not divide block_k={block_k}: "
                                         f"fused_moe_kernel reads one scale per K tile, so the "
                                         f"scales are misread"))
    return out


def _check_other_keys(key: str, entry: dict, device: str) -> list[Finding]:
    """The keys beside the six parameters, all passed to the Triton launch by
    invoke_fused_moe_triton_kernel (see vllm_rules.LAUNCH_OPTIONS)."""
    out = []
    split_k = entry.get("SPLIT_K", vllm_rules.SPLIT_K)
    if split_k != vllm_rules.SPLIT_K:
        out.append(Finding("warning", key, f"SPLIT_K={split_k!r} runs as {vllm_rules.SPLIT_K}: "
                                           f"invoke_fused_moe_triton_kernel sets it"))
    others = sorted(set(entry) - set(CONFIG_KEYS) - {"SPLIT_K"}
                    - set(vllm_rules.launch_keys(device)))
    elsewhere = {k: p for p, keys in vllm_rules.LAUNCH_OPTIONS.items() for k in keys}
    foreign = [k for k in others if k in elsewhere]
    for k in foreign:
        out.append(Finding("error", key, f"{k} is a launch option of Triton on {elsewhere[k]}, "
                                         f"not on {vllm_rules.platform(device)}: the launch "
                                         f"invoke_fused_moe_triton_kernel makes with it fails"))
    unknown = [k for k in others if k not in elsewhere]
    if unknown:
        out.append(Finding("warning", key, f"unknown keys {unknown} are passed to the Triton "
                                           f"launch as-is (invoke_fused_moe_triton_kernel)"))
    return out


def check_flydsl_entry(key: str, entry: object) -> list[Finding]:
    """Findings for one entry of a FlyDSL file: fused_flydsl_moe_impl reads its five tiles and
    runs each as the nearest tile its kernels register."""
    tiles = tuple(vllm_rules.FLYDSL_TILES)
    if not isinstance(entry, dict):
        return [Finding("error", key, "entry is not an object of tiles: fused_flydsl_moe_impl "
                                      "reads it as one")]
    out = []
    for t in tiles:
        v = entry.get(t)
        if v is None:
            out.append(Finding("error", key, f"missing {t}: fused_flydsl_moe_impl reads it"))
        elif isinstance(v, bool) or not isinstance(v, int) or v < 1:
            out.append(Finding("error", key, f"{t}={v!r} is not a positive integer: "
                                             f"fused_flydsl_moe_impl fails on it"))
    extra = sorted(set(entry) - set(tiles))
    if extra:
        out.append(Finding("warning", key, f"keys {extra} are not read: fused_flydsl_moe_impl "
                                           f"reads only {', '.join(tiles)}"))
    if any(f.level == "error" for f in out):
        return out
    runs = vllm_rules.snap_flydsl_tiles(entry)
    changed = [f"{t}={entry[t]} as {runs[t]}" for t in tiles if runs[t] != entry[t]]
    if changed:
        out.append(Finding("warning", key, f"runs {', '.join(changed)} "
                                           f"(_snap_flydsl_int4_tiles)"))
    return out
