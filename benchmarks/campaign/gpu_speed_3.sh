#!/usr/bin/env bash
# GPU campaign (one H200), session 9, last part (what the device budget had left): the bucket
# where 2 + 6 replays chose wrong (qwen3-30B bf16, M=1024), tuned alone twice with 10 + 6
# and once with 2 + 6 (the protocol that agreed with 5 + 20 on the profiles), rounds in the worker,
# one shared Triton cache; the four entries and session 8's a4 entry re-timed by the judge
# (5 + 20, a measurement per round). Results in /tmp/s9c, packed into $OUT after each step.
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
R=/tmp/s9c; PHASE=3; mkdir -p "$R"
source benchmarks/campaign/steps.sh
pack() { tar czf "$OUT/s9c.tgz" --exclude 'triton*' -C /tmp s9c; }
SHIPPED="benchmarks/fidelity_h200/shipped/E=128,N=768,device_name=NVIDIA_H200.json"
export TRITON_CACHE_DIR=$R/triton TUNE_TAIL=2
for p in "10 0" "2 0" "10 1"; do
  set -- $p
  tune w$1_s$2 35 qwen3_30b_a3b_tp1 "$SHIPPED" 'buckets=[1024]' benchmark.warmup_replays=$1 \
    benchmark.replays=6 benchmark.rounds_in_worker=true sampler.seed=$2 benchmark.seed=$2
  pack
done
compare m1024_compare 30 --shape qwen3_30b_a3b_tp1 --buckets 1024 --rounds 5 --tuned \
  "a4=$(ls benchmarks/fidelity_h200/session8/qwen3_bf16_a4/E=*.json)" \
  $(for t in w10_s0 w2_s0 w10_s1; do ls $R/$t/E=*.json >/dev/null 2>&1 && echo "$t=$(ls $R/$t/E=*.json)"; done) \
  -- benchmark.seed=2 benchmark.warmup_replays=5 benchmark.replays=20 benchmark.rounds_in_worker=false
pack
