"""Compiled resource tables: the shared memory, registers and spills each config really needs on an
architecture, recorded once by compiling for it (autotune.kernel.targets) and shipped in the
package, so the search space's shared-memory limit is exact on GPUs we cannot run here.

One table per (architecture, dtype, block shape), ``moe-resource-table/1``: the Triton version it
came from and, per distinct tile config (GROUP_SIZE_M does not change the binary), both GEMMs'
resources or the compile error. Recorded by ``benchmarks/resources/record_tables.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

TABLE_DIR = Path(__file__).resolve().parents[1] / "resource_tables"  # autotune/resource_tables
TABLE_FORMAT = "moe-resource-table/1"
# The config keys that change the compiled binary's resources.
RESOURCE_KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "num_warps", "num_stages")


def table_name(capability: tuple[int, int], dtype: str,
               block_shape: Optional[tuple[int, int]]) -> str:
    block = f"_block{block_shape[0]}x{block_shape[1]}" if block_shape else ""
    return f"sm_{capability[0]}{capability[1]}_{dtype}{block}"


@dataclass(frozen=True)
class Compiled:
    """One config's binaries on the table's architecture (the larger of its two GEMMs' needs).

    ``error`` is set when it does not compile; ``shared`` alone (no registers) when it was not
    compiled because the same tile with one stage fewer already needs more than the table's limit.
    """

    shared: int  # bytes; for a config not compiled, a lower bound (its fewer-stage sibling's)
    registers: Optional[int] = None  # per thread
    local: Optional[int] = None  # bytes per thread of spills and stack
    error: Optional[str] = None

    @classmethod
    def of_gemms(cls, gemms: Sequence[Mapping[str, int]]) -> "Compiled":
        """A config's needs from its GEMMs' (each with shared, registers, local): the larger."""
        return cls(shared=max(g["shared"] for g in gemms),
                   registers=max(g["registers"] for g in gemms),
                   local=max(g["local"] for g in gemms))

    def reason_not_run(self, limit: Optional[int], target: str) -> Optional[str]:
        """Why this config cannot run on a GPU of this architecture with ``limit`` bytes of shared
        memory per block; None when it can."""
        if self.error:
            return f"does not compile for {target}: {self.error}"
        if limit is not None and self.shared > limit:
            more = "more than " if self.registers is None else ""
            return (f"needs {more}{self.shared} bytes of shared memory compiled for {target}, the "
                    f"device allows {limit}")
        return None


@dataclass(frozen=True)
class ResourceTable:
    name: str
    target: str  # sm_120
    triton_version: str
    shared_limit: int  # the limit configs were skipped against (see Compiled)
    entries: Mapping[tuple[int, ...], Compiled]

    def lookup(self, config: Mapping[str, int]) -> Optional[Compiled]:
        """The compiled resources of this tile config, None when the table lacks it."""
        try:
            key = tuple(int(config[k]) for k in RESOURCE_KEYS)
        except KeyError:
            return None
        return self.entries.get(key)

    def __len__(self) -> int:
        return len(self.entries)


def _entry(row: Mapping) -> Compiled:
    if "error" in row:
        return Compiled(shared=0, error=row["error"])
    if "shared_over_limit" in row:
        return Compiled(shared=int(row["shared_over_limit"]))
    return Compiled.of_gemms((row["gemm1"], row["gemm2"]))


@lru_cache(maxsize=None)
def load_table(capability: Optional[tuple[int, int]], dtype: str,
               block_shape: Optional[tuple[int, int]]) -> Optional[ResourceTable]:
    """The shipped table for this architecture and dtype, None when none was recorded."""
    if capability is None:
        return None
    name = table_name(tuple(capability), dtype, tuple(block_shape) if block_shape else None)
    path = TABLE_DIR / f"{name}.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("format") != TABLE_FORMAT:
        raise ValueError(f"{path}: format {data.get('format')!r}, expected {TABLE_FORMAT}")
    entries = {tuple(int(row[k]) for k in RESOURCE_KEYS): _entry(row) for row in data["configs"]}
    return ResourceTable(name, data["target"], data["triton_version"], int(data["shared_limit"]),
                         entries)
