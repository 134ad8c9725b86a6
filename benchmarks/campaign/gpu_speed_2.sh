#!/usr/bin/env bash
# GPU campaign (one H200), session 9, second part: whole tunes with 2 warmup + 6 replays and
# re-timing in one worker request (the defaults when it ran, on f4addd7; given explicitly since
# they were reverted), the measuring worker and the compile pool started with the run, each from
# an empty storage and its own empty Triton cache; their files re-timed
# in another process against the previous default's files of the same shape (bf16: session 8's
# a4; fp8: gpu_speed_1.sh's default tune) and vLLM's shipped file; then the GPU tests. Results in
# /tmp/s9b, packed into $OUT after each step.
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
R=/tmp/s9b; PHASE=2b; mkdir -p "$R"
source benchmarks/campaign/steps.sh
smi | tee "$R/gpu_$PHASE.csv"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))" | tee -a "$R/campaign_$PHASE.log"
pack() { tar czf "$OUT/s9b.tgz" --exclude 'triton*' -C /tmp s9b; }
S9=benchmarks/speed/h200/session9
BF16_SHIPPED="benchmarks/fidelity_h200/shipped/E=128,N=768,device_name=NVIDIA_H200.json"
FP8_SHIPPED="autotune/vllm_configs/E=128,N=768,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"
FP8=(shape.dtype=fp8_w8a8 'shape.block_shape=[128,128]')
FAST=(benchmark.warmup_replays=2 benchmark.replays=6 benchmark.rounds_in_worker=true)
# The judge times as gpu_speed_1.sh's comparisons did: 5 + 20 replays, a whole measurement a round.
JUDGE=(benchmark.seed=2 benchmark.warmup_replays=5 benchmark.replays=20 benchmark.rounds_in_worker=false)
TRITON_CACHE_DIR=$R/triton_bf16 TUNE_TAIL=3 tune qwen3_bf16_new 140 qwen3_30b_a3b_tp1 "$BF16_SHIPPED" "${FAST[@]}"
pack
TRITON_CACHE_DIR=$R/triton_fp8 TUNE_TAIL=3 tune qwen3_fp8_new 140 qwen3_30b_a3b_tp1 "$FP8_SHIPPED" "${FP8[@]}" "${FAST[@]}"
pack
TRITON_CACHE_DIR=$R/triton_bf16 compare qwen3_bf16_compare 80 --shape qwen3_30b_a3b_tp1 \
  --shipped "$BF16_SHIPPED" --rounds 5 --tuned "new=$(ls $R/qwen3_bf16_new/E=*.json)" \
  "a4=$(ls benchmarks/fidelity_h200/session8/qwen3_bf16_a4/E=*.json)" -- "${JUDGE[@]}"
pack
TRITON_CACHE_DIR=$R/triton_fp8 compare qwen3_fp8_compare 80 --shape qwen3_30b_a3b_tp1 \
  --shipped "$FP8_SHIPPED" --rounds 5 --tuned "new=$(ls $R/qwen3_fp8_new/E=*.json)" \
  "default=$(ls $S9/qwen3_fp8_default/E=*.json)" -- "${JUDGE[@]}" "${FP8[@]}"
pack
TRITON_CACHE_DIR=$R/triton_bf16 timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu \
  tests/test_gpu_bench.py tests/test_benchmarker_contract.py 2>&1 | tail -15 | tee "$R/gpu_tests.log"
log "gpu tests done"
smi | tee -a "$R/gpu_$PHASE.csv"
pack
