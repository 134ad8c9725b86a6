#!/usr/bin/env bash
# GPU campaign (one H200), session 7. Layer-stack timing throughout; results in /tmp/s7, packed
# into $OUT after each phase (device calls back to back on one warm machine).
#   PHASE=1  placement.py (do near-tied configs' order depend on routing seed, allocation, layer
#            count?), then gpu_fidelity_2.sh PHASE=4 (session 6's last two fixes on the GPU)
#   PHASE=2  first_reads.py in four processes (process warm-up off, on, off, on); then
#            qwen3-30B bf16 tuned twice from empty storage, other seeds, separate processes
#   PHASE=3  the two tunes re-timed together with vLLM's shipped file, in a third process; then
#            mixtral 8x7B bf16 (tp=2), all 18 buckets, against vLLM's shipped H200 file
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
export TRITON_CACHE_DIR=/tmp/s6/triton
R=/tmp/s7; mkdir -p "$R"
QWEN_BF16="benchmarks/fidelity_h200/shipped/E=128,N=768,device_name=NVIDIA_H200.json"
MIXTRAL_BF16="benchmarks/fidelity_h200/shipped/E=8,N=7168,device_name=NVIDIA_H200.json"
source benchmarks/campaign/steps.sh
smi | tee "$R/gpu_$PHASE.csv"
t0=$(date +%s)
if [ "$PHASE" = 1 ]; then
  timeout -k 10 300 python3 benchmarks/fidelity_h200/placement.py --out "$R/placement_1" \
    2>&1 | tee "$R/placement_1.log" | grep -v "^$"
  log "placement 1 rc=$? wall $(( $(date +%s) - t0 )) s"
  PHASE=4 bash benchmarks/campaign/gpu_fidelity_2.sh 2>&1 | tail -60
elif [ "$PHASE" = 2 ]; then
  mkdir -p "$R/first_reads"
  for w in 0 1.0 0 1.0; do
    n=$(ls "$R/first_reads" | wc -l)
    timeout -k 10 60 python3 benchmarks/fidelity_h200/first_reads.py --warmup $w \
      --out "$R/first_reads/process_${n}_warmup_$w.json" 2>&1 | tee -a "$R/first_reads.log"
  done
  log "first reads wall $(( $(date +%s) - t0 )) s"
  tune qwen3_bf16_a2 210 qwen3_30b_a3b_tp1 "$QWEN_BF16" sampler.seed=0 benchmark.seed=0
  tune qwen3_bf16_b2 210 qwen3_30b_a3b_tp1 "$QWEN_BF16" sampler.seed=1 benchmark.seed=1
else  # packed after each step: a call cut at its limit still brings back what finished
  compare qwen3_bf16_compare_3 200 --shape qwen3_30b_a3b_tp1 --shipped "$QWEN_BF16" --rounds 5 \
    --tuned "a2=$(ls $R/qwen3_bf16_a2/E=*.json)" "b2=$(ls $R/qwen3_bf16_b2/E=*.json)" \
    benchmark.seed=2
  tar czf "$OUT/s7_$PHASE.tgz" --exclude triton -C /tmp s7
  tune mixtral_bf16 "${MIXTRAL_LIMIT:-330}" mixtral_8x7b_tp2 "$MIXTRAL_BF16"
fi
smi | tee -a "$R/gpu_$PHASE.csv"
tar czf "$OUT/s7_$PHASE.tgz" --exclude triton -C /tmp s7
