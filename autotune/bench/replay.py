"""The replay benchmarker: recorded `moe-grid-table/1` timing tables as the objective.

Each table holds every config of a search space timed on a real GPU for one shape and one batch
size M. Replaying them runs the real study code offline, on any machine: for tests, and for
measuring how many trials a sampler needs to reach a table's best.
"""

from __future__ import annotations

import hashlib
import random
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Iterable, Mapping, Optional

from autotune.bench.protocol import Measurement
from autotune.errors import UserError
from autotune.files.grid_table import GridTable, expand_table_paths
from autotune.problem.shape import MoEShape
from autotune.problem.space import SearchSpace
from autotune.problem.vllm_rules import CONFIG_KEYS

# A first look times about 3 replays where a measurement timed 20 when this was set: its noise is
# sqrt(20 / 3) times a measurement's.
SCREEN_NOISE_FACTOR = 2.6


class ReplayBenchmarker:
    """Answers from the tables that match the shape and device; one table per batch size.

    noise_cv > 0 emulates measurement noise: each answer is the recorded time times (1 + cv * z),
    z standard normal (seeded); a first look (`screen`) gets SCREEN_NOISE_FACTOR times more.
    """

    def __init__(self, patterns: Iterable[str], shape: MoEShape, device_name: str,
                 noise_cv: float = 0.0, seed: int = 0):
        if noise_cv < 0:
            raise UserError(f"replay noise_cv={noise_cv}: give a relative spread of 0 or more")
        self.noise_cv = noise_cv
        self._rng = random.Random(seed)
        patterns = list(patterns)
        if not patterns:
            raise UserError("benchmark=replay needs benchmark.tables=[...]: moe-grid-table/1 "
                            "files, globs or folders, or benchmark.tables=bundled (the H200 "
                            "tables in the package)")
        tables = [GridTable.load(p) for p in expand_table_paths(patterns)]
        matching = [t for t in tables if t.matches(shape, device_name)]
        if not matching:
            found = "; ".join(t.describe() for t in tables[:4])
            raise UserError(f"no recorded table is for {shape.describe()} on {device_name}; "
                            f"found {found}")
        self.tables: dict[int, GridTable] = {}
        for t in matching:
            if t.M in self.tables:
                raise UserError(f"two recorded tables for M={t.M}: {self.tables[t.M].path} and "
                                f"{t.path}; keep one")
            self.tables[t.M] = t

    def reseed(self, seed: int) -> None:
        """Restart the emulated noise (the offline evaluation: one stream per repeat)."""
        self._rng.seed(seed)

    def identity(self) -> dict[str, Any]:
        digest = hashlib.sha1()
        for m in sorted(self.tables):
            digest.update(self.tables[m].path.read_bytes())
        identity = {"kind": "replay", "tables": digest.hexdigest()[:8]}
        if self.noise_cv:
            identity["noise_cv"] = self.noise_cv
        return identity

    def default_buckets(self) -> Optional[list[int]]:
        return sorted(self.tables)

    def triton_version(self) -> str:
        """The Triton version the tables were recorded with (it goes into the config file)."""
        return str(next(iter(self.tables.values())).data.get("triton_version", "unknown"))

    def prepare(self, configs: Iterable[Mapping[str, int]], M: int) -> None:
        pass

    def measure(self, config: Mapping[str, int], M: int) -> Measurement:
        return self._noisy(self.recorded(config, M), self.noise_cv)

    def screen(self, config: Mapping[str, int], M: int) -> Measurement:
        """A cheap first look (the `Screening` protocol): the recorded time, noisier."""
        return self._noisy(self.recorded(config, M), self.noise_cv * SCREEN_NOISE_FACTOR)

    def visit(self, config: Mapping[str, int], M: int) -> AbstractContextManager[None]:
        return nullcontext()

    def _noisy(self, m: Measurement, cv: float) -> Measurement:
        if not cv or not m.ok:
            return m
        return Measurement(us=m.us * max(0.5, 1 + cv * self._rng.gauss(0, 1)),  # type: ignore
                           spread=cv, method=m.method)

    def recorded(self, config: Mapping[str, int], M: int) -> Measurement:
        """The table's answer, without emulated noise."""
        table = self.tables.get(M)
        if table is None:  # e.g. the midpoint between two buckets: nothing to replay
            return Measurement.failed(f"no recorded table at M={M}", kind="replay")
        key = SearchSpace.key({k: config[k] for k in CONFIG_KEYS})
        found = table.timings.get(key)
        if found is None:
            return Measurement.failed("not in the recorded table", kind="replay",
                                      table=table.path.name)
        return found

    def verify(self, config: Mapping[str, int], M: int) -> Optional[bool]:
        return None  # a recorded table holds timings, not outputs

    def close(self) -> None:
        pass
