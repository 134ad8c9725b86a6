"""vLLM and SGLang config files: names, JSON layout, safe writing, and validation.

The rules are vLLM's (see the project's docs): a file that breaks one is silently ignored by
vLLM, which then falls back to its default config.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from autotune import vllm_rules
from autotune.space import KERNEL_PARAMS, Config

# The dtype tokens vLLM looks up (`_get_config_dtype_str`); our files carry fp8_w8a8, int8_w8a16
# or none (bf16/fp16).
DTYPE_TOKENS = vllm_rules.CONFIG_DTYPES
# SGLang-named files keep the tokens this check used before (SGLang's lookup was not re-read).
SGLANG_DTYPE_TOKENS = ("fp8_w8a8", "int8_w8a8", "int8_w8a16", "int4_w4a16")

_NAME = re.compile(
    r"^E=(?P<E>\d+),N=(?P<N>\d+),device_name=(?P<device>[^,]+)"
    r"(?:,dtype=(?P<dtype>[^,]+))?(?:,block_shape=\[(?P<bn>\d+), ?(?P<bk>\d+)\])?"
    r"(?:,backend=(?P<backend>[^,]+))?\.json$"
)


def device_token(device_name: str, flavor: str = "vllm") -> str:
    """The device_name token looked up: spaces -> underscores; vLLM also reads any H200 as
    NVIDIA_H200 (SGLang does not), as vllm_rules.config_device says."""
    if flavor == "vllm":
        return vllm_rules.config_device(device_name)
    return device_name.replace(" ", "_")


def dtype_token(dtype: str) -> Optional[str]:
    """Unquantized bf16/fp16 files carry no dtype at all (a `dtype=bf16` file is never read)."""
    return dtype if dtype in DTYPE_TOKENS else None


def config_file_name(E: int, N: int, device_name: str, dtype: str,
                     block_shape: Optional[tuple[int, int]], flavor: str = "vllm") -> str:
    parts = [f"E={E}", f"N={N}", f"device_name={device_token(device_name, flavor)}"]
    token = dtype_token(dtype)
    if token:
        parts.append(f"dtype={token}")
    if block_shape and all(block_shape):
        sep = "," if flavor == "vllm" else ", "  # SGLang writes a space inside the brackets
        parts.append(f"block_shape=[{block_shape[0]}{sep}{block_shape[1]}]")
    return ",".join(parts) + ".json"


def sglang_subdir(triton_version: str) -> str:
    """SGLang's per-Triton folder: `triton_3_6_0` (it reads configs/triton_X_Y_Z/ first)."""
    return "triton_" + "_".join(triton_version.split("+")[0].split(".")[:3])


def render(entries: Mapping[int, Mapping[str, int]], triton_version: Optional[str]) -> str:
    """JSON text as vLLM's tuner writes it: triton_version, ascending keys, 4 spaces, newline.

    triton_version=None leaves the key out, as SGLang needs (it reads every key as a batch size).
    """
    data: dict[str, object] = {}
    if triton_version is not None:
        data["triton_version"] = triton_version
    for m in sorted(entries):
        data[str(m)] = {k: int(entries[m][k]) for k in KERNEL_PARAMS}
    return json.dumps(data, indent=4) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename: a crash leaves the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# The time of a config at a batch size, where known (e.g. from the studies); None: not measured.
Timing = Callable[[int, Mapping[str, int]], Optional[float]]


@dataclass
class Written:
    path: Path
    kept: Optional[Path] = None  # the previous file, kept beside the new one
    reasons: tuple[str, ...] = ()  # why the previous file was kept

    def describe(self) -> str:
        if self.kept is None:
            return f"wrote {self.path}"
        return (f"wrote {self.path}; kept the previous file as {self.kept.name} because "
                + "; ".join(self.reasons))


def write_config_file(path: Path, entries: Mapping[int, Mapping[str, int]],
                      triton_version: Optional[str], timing: Optional[Timing] = None) -> Written:
    """Write the file atomically; if it replaces one that was better in any way (more buckets, a
    faster entry by `timing`, or a file we cannot read), keep that one beside it and say why."""
    path = Path(path)
    text = render(entries, triton_version)
    reasons = _previous_was_better(path, text, entries, timing)
    kept = None
    if reasons:
        kept = _free_name(path.with_name(f"{path.name}.prev-{time.strftime('%Y%m%d-%H%M%S')}"))
        shutil.copy2(path, kept)
    write_atomic(path, text)
    return Written(path, kept, tuple(reasons))


def _previous_was_better(path: Path, text: str, entries: Mapping[int, Mapping[str, int]],
                         timing: Optional[Timing]) -> list[str]:
    if not path.exists():
        return []
    try:
        if path.read_text() == text:
            return []
        old = read_entries(path)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return ["it is not a readable config file"]
    reasons = []
    missing = sorted(set(old) - set(entries))
    if missing:
        reasons.append(f"it has buckets {missing} that this run has no result for")
    for m in sorted(set(old) & set(entries)):
        if timing is None or dict(old[m]) == {k: int(entries[m][k]) for k in KERNEL_PARAMS}:
            continue
        t_old, t_new = timing(m, old[m]), timing(m, entries[m])
        if t_old is not None and t_new is not None and t_new > t_old:
            reasons.append(f"its M={m} entry was faster ({t_old:.2f} us vs {t_new:.2f} us)")
    return reasons


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        candidate, n = path.with_name(f"{path.name}.{n}"), n + 1
    return candidate


def read_entries(path: Path) -> dict[int, Config]:
    """The entries of a config file (integer keys), ignoring triton_version."""
    data = json.loads(Path(path).read_text())
    return {int(k): {p: int(v[p]) for p in KERNEL_PARAMS} for k, v in data.items()
            if k != "triton_version"}


# -- validation (the check command) --------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    level: str  # "error": vLLM never reads, fails on or misreads it; "warning": runs, not as written
    where: str  # the file name, or the entry key
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


def parse_file_name(name: str) -> Optional[dict]:
    """E, N, device, dtype, block_shape and backend of a config file name (None: not named like
    one); flavor "sglang" where block_shape has SGLang's space."""
    m = _NAME.match(name)
    if not m:
        return None
    block = (int(m["bn"]), int(m["bk"])) if m["bn"] else None
    return {"E": int(m["E"]), "N": int(m["N"]), "device": m["device"], "dtype": m["dtype"],
            "block_shape": block, "backend": m["backend"],
            "flavor": "sglang" if ", " in name else "vllm"}


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
    for p in KERNEL_PARAMS:
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
    others = sorted(set(entry) - set(KERNEL_PARAMS) - {"SPLIT_K"}
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
