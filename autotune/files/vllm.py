"""vLLM's config files (and their SGLang-named copies): rendering, writing without replacing a
better file, reading the entries back."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from autotune.files.atomic import write_atomic
from autotune.problem import vllm_rules
from autotune.problem.space import Config
from autotune.problem.vllm_rules import CONFIG_KEYS


def render(entries: Mapping[int, Mapping[str, int]], triton_version: Optional[str]) -> str:
    """JSON text as vLLM's tuner writes it: triton_version, ascending keys, 4 spaces, newline.

    triton_version=None leaves the key out, as SGLang needs (it reads every key as a batch size).
    """
    data: dict[str, object] = {}
    if triton_version is not None:
        data["triton_version"] = triton_version
    for m in sorted(entries):
        data[str(m)] = vllm_rules.kernel_config(entries[m])
    return json.dumps(data, indent=4) + "\n"


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
        if timing is None or dict(old[m]) == vllm_rules.kernel_config(entries[m]):
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
    return {int(k): {p: int(v[p]) for p in CONFIG_KEYS} for k, v in data.items()
            if k != "triton_version"}
