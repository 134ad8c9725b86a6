"""When one process's re-timing cannot order two configs, and which config of such a pair is written.

On an H200 (benchmarks/fidelity_h200/, sessions 7 and 8) one process re-timed near-tied configs
up to 1% apart from one fresh set of inputs to the next, and configs that differ only in
GROUP_SIZE_M changed order from one process to the next by up to 3% (Qwen3-30B bf16, one tile at
M=2048: GROUP_SIZE_M=16 2.9% ahead of 1 in one process, 1.6-2.5% behind it in three others).
Such a process wrote the variant its own scatter favoured. GROUP_SIZE_M only orders the tile
schedule, so where a smaller GROUP_SIZE_M lies within the fastest variant's own spread over the
rounds, the process has not told them apart and the smallest is written. A wider band (1%) gave
two runs the same entry everywhere, but at M=4 GROUP_SIZE_M=1 was 0.4-1.0% behind in every tuning
process and 1.3-1.7% behind in two others: a real loss, so the band is the spread alone.
"""

from __future__ import annotations

from typing import Any

from autotune.problem.vllm_rules import CONFIG_KEYS

TIE = 0.01


def tied(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two re-timings ({"us", "spread"}) are too close to order: under 1% apart, or
    under either's spread over the rounds."""
    slow, fast = max(a["us"], b["us"]), min(a["us"], b["us"])
    return slow / fast - 1 < max(TIE, a.get("spread") or 0, b.get("spread") or 0)


def differs(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The kernel parameters in which two configs differ."""
    return [k for k in CONFIG_KEYS if a[k] != b[k]]


def writing_order(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The re-timed candidates in the order they are tried for the entry: fastest first, except
    that the smallest GROUP_SIZE_M among the variants of the fastest (differing only in
    GROUP_SIZE_M) that lie within the fastest's spread over the rounds goes before it."""
    ranked = sorted((c for c in candidates if c["us"] is not None), key=lambda c: c["us"])
    if not ranked:
        return []
    fastest = ranked[0]
    band = fastest["us"] * (1 + (fastest.get("spread") or 0))
    variants = [c for c in ranked if c["us"] <= band
                and differs(c["config"], fastest["config"]) in ([], ["GROUP_SIZE_M"])]
    first = min(variants, key=lambda c: c["config"]["GROUP_SIZE_M"])  # stable: fastest on equal
    return [first] + [c for c in ranked if c is not first]
