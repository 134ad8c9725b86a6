"""compare_with=: an existing vLLM config file whose entries are re-timed beside the tuned ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from autotune.errors import UserError
from autotune.files.check import check_file
from autotune.files.names import config_file_name, dtype_token, parse_file_name
from autotune.files.vllm import read_entries
from autotune.problem import vllm_rules
from autotune.problem.shape import MoEShape
from autotune.problem.space import Config


@dataclass(frozen=True)
class Comparison:
    """An existing vLLM config file that the tuned entries are compared with."""

    path: Path
    entries: dict[int, Config]

    def entry_for(self, M: int, block_shape: Optional[tuple[int, int]]) -> dict[str, Any]:
        """The entry vLLM would take from this file for M tokens, and what the kernel runs."""
        key = vllm_rules.nearest_key(self.entries, M)
        config = vllm_rules.nearest_entry(self.entries, M)
        return {"file": self.path.name, "key": key, "config": config,
                "runs_as": vllm_rules.runs_as(config, block_shape)}


def load_comparison(path: str, shape: MoEShape, device_name: str) -> Comparison:
    """The file of compare_with=: a file, or a folder of them (vLLM's `configs/`, say) in which
    the file vLLM would look up for this shape and device is taken. Refused when vLLM could not
    load it or it is for another shape (a file for another GPU is allowed: the user chose it)."""
    p = Path(path).expanduser()
    if p.is_dir():
        name = config_file_name(shape.E, shape.N, device_name, shape.dtype, shape.block_shape)
        if not (p / name).is_file():
            raise UserError(f"compare_with={path}: the folder has no {name}; give the folder vLLM "
                            f"ships its configs in, or a file")
        p = p / name
    if not p.is_file():
        raise UserError(f"compare_with={path}: no such file or folder; give an existing vLLM "
                        f"config file (quote it: compare_with='\"E=...json\"') or its folder")
    errors = [f for f in check_file(p) if f.level == "error"]
    if errors:
        raise UserError(f"compare_with={path}: {errors[0]}; vLLM could not load it either")
    parsed = parse_file_name(p.name)
    assert parsed is not None  # check_file refuses names it cannot parse
    if ((parsed["E"], parsed["N"], parsed["dtype"], parsed["block_shape"])
            != (shape.E, shape.N, dtype_token(shape.dtype), shape.block_shape)):
        raise UserError(f"compare_with={p.name} is for another shape than this run's "
                        f"{shape.describe()}; give the file vLLM would load for it")
    return Comparison(p.resolve(), read_entries(p))
