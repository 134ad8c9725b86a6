"""A bucket's first trials: what is known before anything is measured for it.

In this order, each config once:
1. the best configs of the nearest already-tuned buckets of the same study set (below and above M):
   neighbouring batch sizes share their winners more often than not;
2. vLLM's default config for the bucket (the baseline the tuned entry must beat);
3. the entry vLLM would take for M from the file the run is compared with (compare_with=, vLLM's
   shipped file for this GPU, say): the tuned entry is judged against it, so it is measured,
   never left to chance (a mixtral M=128 tune on an H200 missed it in 32 trials and wrote an
   entry 2.5% slower than the shipped one);
4. the entry nearest to M of a vLLM config file the user names (e.g. one for another GPU), as the
   nearest config of the space;
5. the top of the prior ranking learned from vLLM's shipped files and recorded tables of other
   GPUs and shapes.
Configs the space excludes are dropped; the study also skips ones it has already measured.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

from autotune.config import SamplerConfig
from autotune.errors import UserError
from autotune.problem import vllm_rules
from autotune.problem.space import Config, SearchSpace
from autotune.search.prior import (
    PriorSource,
    PriorWeights,
    ShippedFile,
    load_prior_sources,
    nearest_config,
    rank_configs,
)
from autotune.study.records import Record

WarmStart = tuple[str, Config]


def first_trials(space: SearchSpace, device_name: str, M: int, cfg: SamplerConfig,
                 tuned: Optional[Mapping[int, Sequence[Record]]] = None,
                 prior_files: Optional[Sequence[PriorSource]] = None,
                 compared: Optional[Mapping[int, Config]] = None) -> list[WarmStart]:
    """The warm starts of bucket M, in the order they should be measured.

    tuned: the measured trials of other buckets of the same GPU, shape and space, by M.
    prior_files: the sources to learn the prior from (None: as cfg.prior_files and
    cfg.prior_source say).
    compared: the entries of the file the run is compared with (compare_with=), if any.
    """
    out: list[WarmStart] = []
    seen: set[tuple] = set()

    def add(source: str, config: Config) -> None:
        config = {k: int(config[k]) for k in space.params}
        key = SearchSpace.key(config)
        if key not in seen and space.contains(config) and space.violation(config) is None:
            seen.add(key)
            out.append((source, config))

    for other, config in neighbour_bests(tuned or {}, M, cfg.neighbour_trials):
        add(f"neighbour_M{other}", config)
    shape = space.context.shape
    if cfg.warm_start_default:
        add("vllm_default", vllm_rules.default_config(M, shape.E, shape.dtype, shape.block_shape))
    if compared and cfg.warm_start_compared:
        entry = vllm_rules.runs_as(vllm_rules.nearest_entry(compared, M), shape.block_shape)
        add("compared", nearest_config(space, entry))
    if cfg.warm_start_file:
        user = load_warm_start_file(cfg.warm_start_file)
        add("file", nearest_config(space, vllm_rules.nearest_entry(user.entries, M)))
    if cfg.prior_trials > 0:
        files = prior_files if prior_files is not None else load_prior_sources(cfg.prior_files,
                                                                         cfg.prior_source)
        taken = 0
        for config in rank_configs(space, files, device_name, M,
                                   PriorWeights(table=cfg.prior_table_weight)):
            if taken >= cfg.prior_trials:
                break
            if SearchSpace.key(config) not in seen:
                add("prior", config)
                taken += 1
    return out


def neighbour_bests(tuned: Mapping[int, Sequence[Record]], M: int,
                    per_bucket: int) -> list[tuple[int, Config]]:
    """The best `per_bucket` configs of the nearest tuned bucket below M and above M.

    Interleaved best-first, the nearer bucket (in octaves) first. Buckets are looked up nearest
    first on each side, and no farther than the first with a measurement: `tuned` may read a
    bucket's records when it is looked up.
    """
    if per_bucket <= 0:
        return []
    nearest = []
    for side in (sorted((m for m in tuned if m < M), reverse=True),
                 sorted(m for m in tuned if m > M)):
        found = next((m for m in side if ranked_records(tuned[m])), None)
        if found is not None:
            nearest.append(found)
    nearest.sort(key=lambda m: abs(math.log2(m) - math.log2(M)))
    lists = [(m, ranked_records(tuned[m])[:per_bucket]) for m in nearest]
    out = []
    for i in range(per_bucket):
        out.extend((m, ranked[i].config) for m, ranked in lists if i < len(ranked))
    return out


def ranked_records(records: Sequence[Record]) -> list[Record]:
    """Measured configs, fastest first."""
    return sorted((r for r in records if r.ok and not r.pruned), key=lambda r: r.us)


def load_warm_start_file(path: str) -> ShippedFile:
    """The file of sampler.warm_start_file, refused in one line when missing or unreadable."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"sampler.warm_start_file={path} does not exist; name a vLLM config file")
    return ShippedFile.load(p)
