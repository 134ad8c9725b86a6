"""A bucket's study name, built and parsed only here.

`<device>/E=..,N=..,K=..,topk=..,<dtype>[,block=NxK]/<space>-<fingerprint>/<benchmark>-<hash>/M=<M>`:
everything that changes the answer. The part before `/M=` names the run: every bucket of one
run shares it, and the report and the warm starts find a run's other buckets by it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from autotune.files.names import device_token
from autotune.problem.shape import MoEShape
from autotune.problem.space import SearchSpace

_M = "/M="


@dataclass(frozen=True)
class StudyName:
    run: str  # what every bucket of the run shares
    M: int

    @classmethod
    def of(cls, device_name: str, shape: MoEShape, space: SearchSpace, benchmark_kind: str,
           benchmark_identity: Mapping[str, Any], M: int) -> "StudyName":
        s = shape
        block = f",block={s.block_shape[0]}x{s.block_shape[1]}" if s.block_shape else ""
        bench = json.dumps(dict(benchmark_identity), sort_keys=True)
        bench_hash = hashlib.sha1(bench.encode()).hexdigest()[:8]
        run = (f"{device_token(device_name)}/E={s.E},N={s.N},K={s.K},topk={s.topk},"
               f"{s.dtype}{block}/{space.name}-{space.fingerprint()}/"
               f"{benchmark_kind}-{bench_hash}")
        return cls(run, M)

    @classmethod
    def parse(cls, name: str) -> Optional["StudyName"]:
        """The name of a bucket's study; None for any other study the storage holds."""
        run, sep, M = name.rpartition(_M)
        return cls(run, int(M)) if sep and M.isdigit() else None

    @classmethod
    def bucket(cls, name: str) -> "StudyName":
        """The name of a study known to be a bucket's."""
        parsed = cls.parse(name)
        if parsed is None:
            raise ValueError(f"{name}: not the study of a bucket")
        return parsed

    def __str__(self) -> str:
        return f"{self.run}{_M}{self.M}"

    def pattern(self) -> str:
        """Every bucket of the run, as the report names them."""
        return f"{self.run}{_M}*"
