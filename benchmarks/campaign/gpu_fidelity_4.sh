#!/usr/bin/env bash
# GPU campaign (one H200), session 8: GROUP_SIZE_M ties written as the smallest GROUP_SIZE_M
# (autotune/consolidate/ties.py). Layer-stack timing throughout; results in /tmp/s8, packed into
# $OUT after each step (device calls back to back on one warm machine).
#   PHASE=1  qwen3-30B bf16 tuned twice from empty storage, seeds 0 and 1, separate processes (the
#            first from a cold Triton cache)
#   PHASE=2  the two tunes re-timed together with vLLM's shipped file in a third process, then
#            again in a fourth (another benchmark seed): do the two files agree within 1% at
#            every bucket, in both?
#   PHASE=3, 4  the same with the rule narrowed to the fastest's spread (a4, b4), on a fresh
#            machine (cold Triton cache)
#   PHASE=5  after a drift, the fastest finalist's unmeasured GROUP_SIZE_M variants re-timed too:
#            M = 1-8 tuned again with a4's and b4's seeds (c5, d5; fresh machine), then re-timed
#            with a4 and b4 in another process
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
export TRITON_CACHE_DIR=/tmp/s8/triton
R=/tmp/s8; mkdir -p "$R"
QWEN_BF16="benchmarks/fidelity_h200/shipped/E=128,N=768,device_name=NVIDIA_H200.json"
source benchmarks/campaign/steps.sh
smi | tee "$R/gpu_$PHASE.csv"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))" | tee -a "$R/campaign_$PHASE.log"
pack() { tar czf "$OUT/s8_$PHASE.tgz" --exclude triton -C /tmp s8; }
A=a3; B=b3; [ "$PHASE" -ge 3 ] && { A=a4; B=b4; }
S8=benchmarks/fidelity_h200/session8
if [ "$PHASE" = 5 ]; then
  TUNE_TAIL=8 tune qwen3_bf16_c5 120 qwen3_30b_a3b_tp1 "$QWEN_BF16" sampler.seed=1 benchmark.seed=1 \
    'buckets=[1,2,4,8]'
  TUNE_TAIL=8 tune qwen3_bf16_d5 120 qwen3_30b_a3b_tp1 "$QWEN_BF16" sampler.seed=0 benchmark.seed=0 \
    'buckets=[1,2,4,8]'
  pack
  compare qwen3_bf16_compare_c5 120 --shape qwen3_30b_a3b_tp1 --shipped "$QWEN_BF16" --rounds 5 \
    --tuned "c5=$(ls $R/qwen3_bf16_c5/E=*.json)" "d5=$(ls $R/qwen3_bf16_d5/E=*.json)" \
    "a4=$(ls $S8/qwen3_bf16_a4/E=*.json)" "b4=$(ls $S8/qwen3_bf16_b4/E=*.json)" -- benchmark.seed=2
elif [ "$PHASE" = 1 ] || [ "$PHASE" = 3 ]; then
  TUNE_TAIL=24 tune qwen3_bf16_$A 250 qwen3_30b_a3b_tp1 "$QWEN_BF16" sampler.seed=0 benchmark.seed=0
  pack
  TUNE_TAIL=24 tune qwen3_bf16_$B 250 qwen3_30b_a3b_tp1 "$QWEN_BF16" sampler.seed=1 benchmark.seed=1
else
  for seed in 2 3; do
    compare qwen3_bf16_compare_${A}_s$seed 240 --shape qwen3_30b_a3b_tp1 --shipped "$QWEN_BF16" \
      --rounds 5 --tuned "$A=$(ls $R/qwen3_bf16_$A/E=*.json)" "$B=$(ls $R/qwen3_bf16_$B/E=*.json)" \
      -- benchmark.seed=$seed
    pack
  done
fi
smi | tee -a "$R/gpu_$PHASE.csv"
pack
