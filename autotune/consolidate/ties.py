"""When one process's re-timing cannot order two configs, and which config of such a tie is written.

On an H200 (benchmarks/fidelity_h200/, sessions 7 and 8) one process re-timed near-tied configs
up to 1% apart from one fresh set of inputs to the next. Configs that differ only in GROUP_SIZE_M
did worse: their order changed from one process to the next. Qwen3-30B bf16, one tile at M=2048:
GROUP_SIZE_M=16 re-timed 2.9% ahead of 1 in one process and 1.6-2.5% behind it in three others;
at M=2, GROUP_SIZE_M=32 tied with 1 in one process (0.1%) and was 1.5% behind in another. Each
process wrote the variant its own re-timing favoured, so two runs wrote different entries.
GROUP_SIZE_M only orders the tile schedule, so among such a tie the smallest is written: the
choice then does not depend on the process, and two runs write the same entry.
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
    that the smallest GROUP_SIZE_M among the fastest's ties that differ from it only in
    GROUP_SIZE_M goes before it."""
    ranked = sorted((c for c in candidates if c["us"] is not None), key=lambda c: c["us"])
    if not ranked:
        return []
    fastest = ranked[0]
    variants = [c for c in ranked if differs(c["config"], fastest["config"]) in ([], ["GROUP_SIZE_M"])
                and tied(c, fastest)]
    first = min(variants, key=lambda c: c["config"]["GROUP_SIZE_M"])  # stable: fastest on equal
    return [first] + [c for c in ranked if c is not first]
