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

from autotune.space import KERNEL_PARAMS, Config

DTYPE_TOKENS = ("fp8_w8a8", "int8_w8a8", "int8_w8a16", "int4_w4a16")

_NAME = re.compile(
    r"^E=(?P<E>\d+),N=(?P<N>\d+),device_name=(?P<device>[^,]+)"
    r"(?:,dtype=(?P<dtype>[^,]+))?(?:,block_shape=\[(?P<bn>\d+), ?(?P<bk>\d+)\])?\.json$"
)


def device_token(device_name: str, flavor: str = "vllm") -> str:
    """The device_name token looked up: spaces -> underscores; vLLM also reads any H200 as
    NVIDIA_H200 (SGLang does not)."""
    if flavor == "vllm" and "H200" in device_name:
        return "NVIDIA_H200"
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


def runs_as(config: Mapping[str, int], block_shape: Optional[tuple[int, int]]) -> Config:
    """The config the kernel really runs: with block quantization BLOCK_SIZE_K is capped at
    block_k (a BLOCK_SIZE_K=256 entry of a [128,128] file runs as 128)."""
    out = {k: int(config[k]) for k in KERNEL_PARAMS}
    if block_shape is not None:
        out["BLOCK_SIZE_K"] = min(out["BLOCK_SIZE_K"], block_shape[1])
    return out


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
    level: str  # "error": vLLM ignores or misreads the file; "warning": it runs, not as written
    where: str  # the file name, or the entry key
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


def parse_file_name(name: str) -> Optional[dict]:
    m = _NAME.match(name)
    if not m:
        return None
    block = (int(m["bn"]), int(m["bk"])) if m["bn"] else None
    return {"E": int(m["E"]), "N": int(m["N"]), "device": m["device"], "dtype": m["dtype"],
            "block_shape": block, "flavor": "sglang" if ", " in name else "vllm"}


def check_file(path: Path) -> list[Finding]:
    """Every rule vLLM's (or, for an SGLang-named file, SGLang's) loader and kernel apply to a
    config file, as findings."""
    path = Path(path)
    name = path.name
    parsed = parse_file_name(name)
    if parsed is None:
        return [Finding("error", name, "name is not E={E},N={N},device_name={device}"
                        "[,dtype={dtype}][,block_shape=[{bn},{bk}]].json")]
    findings = _check_name(name, parsed)
    repeated: list[str] = []
    try:
        data = json.loads(path.read_text(), object_pairs_hook=lambda pairs: _no_repeats(pairs,
                                                                                         repeated))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return findings + [Finding("error", name, f"not readable as JSON: {exc}")]
    if not isinstance(data, dict):
        return findings + [Finding("error", name, "top level is not a JSON object")]
    findings += [Finding("warning", k, "key appears more than once; the last one is used")
                 for k in repeated]
    return findings + _check_entries(name, data, parsed["block_shape"], parsed["flavor"])


def _no_repeats(pairs: list, repeated: list[str]) -> dict:
    seen: dict = {}
    for k, v in pairs:
        if k in seen:
            repeated.append(k)
        seen[k] = v
    return seen


def _check_name(name: str, parsed: dict) -> list[Finding]:
    out = []
    device = parsed["device"]
    if " " in device:
        out.append(Finding("error", name, f"device_name={device!r} has spaces; the token is "
                                          f"{device_token(device, parsed['flavor'])!r}"))
    elif device == "cpu":
        out.append(Finding("error", name, "device_name=cpu is a CPU smoke run's file (Triton's "
                                          "interpreter): vLLM looks up GPU names only"))
    elif parsed["flavor"] == "vllm" and "H200" in device and device != "NVIDIA_H200":
        out.append(Finding("error", name, f"device_name={device}: vLLM looks up every H200 as "
                                          f"NVIDIA_H200"))
    dtype = parsed["dtype"]
    if dtype is not None and dtype not in DTYPE_TOKENS:
        hint = " (bf16/fp16 files carry no dtype token)" if dtype in ("bf16", "fp16") else ""
        out.append(Finding("error", name, f"dtype={dtype} is never looked up{hint}; known: "
                                          f"{', '.join(DTYPE_TOKENS)}"))
    if parsed["block_shape"] is not None and dtype is None:
        out.append(Finding("error", name, "block_shape without a dtype token is never looked up"))
    return out


def _check_entries(name: str, data: dict, block: Optional[tuple[int, int]],
                   flavor: str) -> list[Finding]:
    out = []
    version = data.get("triton_version")
    if version is not None and not isinstance(version, str):
        out.append(Finding("error", name, f"triton_version={version!r} is not a string"))
    if "triton_version" in data and flavor == "sglang":
        out.append(Finding("error", name, "an SGLang-named file must not hold triton_version: "
                                          "SGLang reads every key as a batch size"))
    keys = [k for k in data if k != "triton_version"]
    if not keys:
        out.append(Finding("error", name, "no batch-size entries"))
    bad = [k for k in keys if not (k.isascii() and k.isdigit()) or int(k) < 1]
    for k in bad:
        out.append(Finding("error", k, "key is not a positive integer batch size"))
    good = [int(k) for k in keys if k not in bad]
    if good != sorted(good):
        out.append(Finding("error", name, f"batch-size keys are not in ascending order: {good}"))
    for k in keys:
        if k not in bad:
            out.extend(check_entry(k, data[k], block))
    return out


# Triton's tl.arange needs power-of-two tile sizes; a CTA's warp count must be one too.
_POWERS_OF_TWO = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "num_warps")


def check_entry(key: str, entry: object, block: Optional[tuple[int, int]]) -> list[Finding]:
    """Findings for one entry. An entry with none is one the kernel runs exactly as written."""
    if not isinstance(entry, dict):
        return [Finding("error", key, "entry is not an object of kernel parameters")]
    out = []
    for p in KERNEL_PARAMS:
        v = entry.get(p)
        if v is None:
            out.append(Finding("error", key, f"missing {p}"))
        elif isinstance(v, bool) or not isinstance(v, int) or v < 1:
            out.append(Finding("error", key, f"{p}={v!r} is not a positive integer"))
    extra = sorted(set(entry) - set(KERNEL_PARAMS))
    if extra:
        out.append(Finding("warning", key, f"unknown keys {extra} are passed to the kernel as-is"))
    if any(f.level == "error" for f in out):
        return out
    for p in _POWERS_OF_TWO:
        if entry[p] & (entry[p] - 1):
            out.append(Finding("error", key, f"{p}={entry[p]} is not a power of two: Triton "
                                             f"cannot compile it"))
    if block is None:
        return out
    block_n, block_k = block
    bn, bk = entry["BLOCK_SIZE_N"], entry["BLOCK_SIZE_K"]
    if block_n % bn and bn % block_n:
        out.append(Finding("error", key, f"BLOCK_SIZE_N={bn} neither divides nor is a multiple of "
                                         f"block_n={block_n}: the weight scales are misread"))
    if bk > block_k:
        out.append(Finding("warning", key, f"BLOCK_SIZE_K={bk} runs as {block_k} with "
                                           f"block_shape [{block_n},{block_k}]"))
    elif block_k % bk:
        out.append(Finding("error", key, f"BLOCK_SIZE_K={bk} does not divide block_k={block_k}"))
    return out
