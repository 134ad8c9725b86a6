"""Where a tune's GPU work goes: kernel time by kind of measurement and batch-size range.

From a stored tune (studies.db or studies.db.gz): each measurement's kernel calls (the offline
evaluation's cost model, autotune/evaluate/core.py) times its stored per-call time. The search's
first looks and full measurements, the finalists' re-timing (every stored round of every
candidate, vLLM's default and the compared entry) and the midpoint checks. Fixed costs per
measurement (capture, the correctness check) are left out: compare the total with the run's
`benchmark: ... in N s` line.

    python benchmarks/speed/gpu_work.py benchmarks/speed/h100/session17/qwen3_bf16_new/studies.db.gz
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import optuna
from retime_protocols import RANGES  # the same batch-size ranges as the re-timing bootstrap

from autotune.evaluate.core import LOOK_CALLS, full_calls


def kernel_seconds(db: Path) -> tuple[Counter, Counter]:
    """Kernel seconds and measurements by (kind, M range)."""
    seconds, count = Counter(), Counter()
    url = f"sqlite:///{db}"
    for summary in optuna.get_all_study_summaries(url):
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        M = study.user_attrs.get("M")
        if M is None:
            continue
        where = next(name for name, top in RANGES if M <= top)

        def add(kind: str, calls: int, us: float, at: str = where) -> None:
            seconds[kind, at] += calls * us / 1e6
            count[kind, at] += 1

        for t in study.trials:
            a = t.user_attrs
            if not a.get("measured"):
                continue
            look = a.get("first_look_us")
            if look:
                add("first looks", LOOK_CALLS, look)
            if t.state.name == "COMPLETE" and a.get("us") is not None:
                add("full measurements", full_calls(M, bool(look)), a["us"])
        cons = study.user_attrs.get("consolidation") or {}
        for c in cons.get("candidates", []) + [cons.get("default") or {}, cons.get("file") or {}]:
            for us in c.get("samples") or []:
                add("re-timing", full_calls(M, False), us)
        mid = study.user_attrs.get("midpoint") or {}
        for timing in (mid.get("served") or {}, mid.get("neighbour_timing") or {}):
            for us in timing.get("samples") or []:
                add("midpoints", full_calls(mid["M"], False), us)
    return seconds, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("storage", type=Path)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.storage
        if db.suffix == ".gz":
            db = Path(tmp) / "studies.db"
            with gzip.open(args.storage) as src, open(db, "wb") as dst:
                shutil.copyfileobj(src, dst)
        seconds, count = kernel_seconds(db)
    kinds = list(dict.fromkeys(k for k, _ in seconds))
    print(f"{args.storage}: kernel seconds (measurements)\n")
    print("| kind | " + " | ".join(name for name, _ in RANGES) + " | all |")
    print("|---|" + "---:|" * (len(RANGES) + 1))
    for kind in kinds + ["all"]:
        cells = []
        for name, _ in RANGES + [("all", 0)]:
            keys = [(k, r) for k, r in seconds if (kind in ("all", k)) and name in ("all", r)]
            cells.append(f"{sum(seconds[x] for x in keys):.1f} ({sum(count[x] for x in keys)})")
        print(f"| {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
