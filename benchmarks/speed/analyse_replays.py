"""Judge timing protocols on the samples `profile_measure.py` kept, and say where the time goes.

A protocol (warmup, replays) reads one measurement as the median of samples[warmup:warmup+replays]
of a round (every round replayed its graph with no warmup). Against the reference, the protocol a
tune used when the profile ran (5 warmup, 20 replays) over every round, per batch size:

- err: the largest difference of one measurement from its config's reference time;
- pick: how often the fastest config of one round, by the protocol, is the reference's fastest or
  within 0.5% of it, and the worst loss of such a pick;
- median pick: the loss of the config whose median over every round is fastest by the protocol
  (as the finalists' re-timing decides);
- gpu ms: the GPU time one measurement costs ((warmup + replays) x calls x time per call).

    python benchmarks/speed/analyse_replays.py benchmarks/speed/h200/profile_bf16.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

REFERENCE = (5, 20)
PROTOCOLS = [(5, 20), (10, 6), (5, 6), (2, 10), (2, 6), (1, 5), (1, 3)]


def reading(samples: list[float], warmup: int, replays: int) -> float:
    return statistics.median(samples[warmup:warmup + replays])


def judge(bucket: dict, warmup: int, replays: int) -> dict:
    configs = bucket["configs"]
    ref = [statistics.median(reading(s, *REFERENCE) for s in c["rounds"]) for c in configs]
    best = min(ref)
    rounds = len(configs[0]["rounds"])
    err = max(abs(reading(s, warmup, replays) / r - 1)
              for c, r in zip(configs, ref) for s in c["rounds"])
    picks = []
    for k in range(rounds):
        times = [reading(c["rounds"][k], warmup, replays) for c in configs]
        picks.append(ref[times.index(min(times))] / best - 1)
    medians = [statistics.median(reading(s, warmup, replays) for s in c["rounds"])
               for c in configs]
    median_pick = ref[medians.index(min(medians))] / best - 1
    gpu_ms = statistics.mean((warmup + replays) * c["calls"] * r / 1000
                             for c, r in zip(configs, ref))
    return {"err": err, "good_picks": sum(p <= 0.005 for p in picks) / rounds,
            "worst_pick": max(picks), "median_pick": median_pick, "gpu_ms": gpu_ms}


def main(path: Path) -> None:
    profile = json.loads(path.read_text())
    print(f"{profile['shape']} on {profile['device']}: {path.name}\n")
    print("| M | configs | layers x calls | capture ms | measure ms | GPU ms of a measurement |")
    print("|---|---|---|---|---|---|")
    for b in profile["buckets"]:
        c = b["configs"]
        ref = judge(b, *REFERENCE)
        print(f"| {b['M']} | {len(c)} | {c[0]['layers']} x {c[0]['calls']} | "
              f"{1000 * statistics.mean(e['capture_s'] for e in c):.1f} | "
              f"{1000 * statistics.mean(e['measure_s'] for e in c):.1f} | {ref['gpu_ms']:.1f} |")
    print("\n| M | protocol (warmup, replays) | err | picks within 0.5% | worst pick | median pick "
          "| GPU ms |")
    print("|---|---|---|---|---|---|---|")
    for b in profile["buckets"]:
        for w, r in PROTOCOLS:
            j = judge(b, w, r)
            print(f"| {b['M']} | {w}, {r} | {100 * j['err']:.2f}% | {100 * j['good_picks']:.0f}% | "
                  f"{100 * j['worst_pick']:.2f}% | {100 * j['median_pick']:.2f}% | {j['gpu_ms']:.1f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
