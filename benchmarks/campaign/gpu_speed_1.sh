#!/usr/bin/env bash
# GPU campaign (one H200), session 9: where a whole tune's time goes, and how much of it the
# re-timing in one worker request and fewer replays per measurement save. Layer-stack timing;
# every tune from an empty storage and its own empty Triton cache. Results in /tmp/s9, packed into
# $OUT after each step.
#   PHASE=1  qwen3-30B bf16: a tune with re-timing in one worker request (benchmark.rounds_in_worker)
#            and session 8's timing protocol (5 warmup, 20 replays), then one with 2 warmup and 6
#            replays too; a profile of the measurement (phases, and every replay's sample kept, for
#            analyse_replays.py); both files re-timed with session 8's default file (a4) and vLLM's
#            shipped file in another process
#   PHASE=2  qwen3-30B fp8 block [128,128]: the default tune (the baseline), the fast one, the
#            profile and the comparison
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
R=/tmp/s9; mkdir -p "$R"
source benchmarks/campaign/steps.sh
smi | tee "$R/gpu_$PHASE.csv"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))" | tee -a "$R/campaign_$PHASE.log"
pack() { tar czf "$OUT/s9_$PHASE.tgz" --exclude 'triton*' -C /tmp s9; }
FAST="benchmark.rounds_in_worker=true benchmark.warmup_replays=2 benchmark.replays=6"
if [ "$PHASE" = 1 ]; then
  TAG=qwen3_bf16; SHIPPED="benchmarks/fidelity_h200/shipped/E=128,N=768,device_name=NVIDIA_H200.json"
  DTYPE=(); FIRST=rounds; FIRST_SET=(benchmark.rounds_in_worker=true)
  PREVIOUS=("a4=$(ls benchmarks/fidelity_h200/session8/qwen3_bf16_a4/E=*.json)")
else
  TAG=qwen3_fp8; SHIPPED="autotune/vllm_configs/E=128,N=768,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"
  DTYPE=(shape.dtype=fp8_w8a8 'shape.block_shape=[128,128]'); FIRST=default; FIRST_SET=(); PREVIOUS=()
fi
TRITON_CACHE_DIR=$R/triton_${TAG}_$FIRST TUNE_TAIL=3 tune ${TAG}_$FIRST 230 qwen3_30b_a3b_tp1 \
  "$SHIPPED" "${DTYPE[@]}" "${FIRST_SET[@]}"
pack
TRITON_CACHE_DIR=$R/triton_${TAG}_fast TUNE_TAIL=3 tune ${TAG}_fast 160 qwen3_30b_a3b_tp1 "$SHIPPED" \
  "${DTYPE[@]}" $FAST
pack
TRITON_CACHE_DIR=$R/triton_${TAG}_$FIRST timeout 100 python3 benchmarks/speed/profile_measure.py \
  --shape qwen3_30b_a3b_tp1 --file "$(ls $R/${TAG}_$FIRST/E=*.json)" --out "$R/profile_$TAG.json" \
  "${DTYPE[@]}" 2>&1 | tee "$R/profile_$TAG.log"
log "profile rc=$?"
pack
TRITON_CACHE_DIR=$R/triton_${TAG}_$FIRST compare ${TAG}_compare 90 --shape qwen3_30b_a3b_tp1 \
  --shipped "$SHIPPED" --rounds 5 --tuned "$FIRST=$(ls $R/${TAG}_$FIRST/E=*.json)" \
  "fast=$(ls $R/${TAG}_fast/E=*.json)" "${PREVIOUS[@]}" -- benchmark.seed=2 "${DTYPE[@]}"
smi | tee -a "$R/gpu_$PHASE.csv"
pack
