#!/usr/bin/env bash
# GPU campaign (one H200), session 6: the fidelity fixes measured end to end, and a whole run's
# wall time by phase. Layer-stack timing (the default) throughout. Two device calls, back to back
# on the same warm machine (results kept in /tmp/s6 between them, packed into $OUT each time):
#   PHASE=1 benchmarks/campaign/gpu_fidelity_2.sh  # qwen3-30B fp8 block tune (cold Triton cache),
#                                                 # its grid at M = 1, 16; qwen3-30B bf16 tune A
#   PHASE=2 benchmarks/campaign/gpu_fidelity_2.sh  # qwen3-30B bf16 tune B (other seeds, another
#                                                 # process); mixtral bf16; the comparisons
#   PHASE=3 benchmarks/campaign/gpu_fidelity_2.sh  # the grid's M=16 finished (resumed); fp8 vs grid
#   PHASE=4 benchmarks/campaign/gpu_fidelity_2.sh  # a fresh machine, after the fixes (polish, wider
#                                                 # drift band): fp8 M = 1, 16 tuned again, against
#                                                 # the grid and the first tune; bf16 A vs B again
# Every step is bounded (SIGINT first: a run writes what it settled; SIGKILL 15 s later).
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
export TRITON_CACHE_DIR=/tmp/s6/triton  # empty on a fresh machine: the first tune starts cold
R=/tmp/s6; mkdir -p "$R"
SHIPPED=benchmarks/fidelity_h200/shipped
QWEN_BF16="$SHIPPED/E=128,N=768,device_name=NVIDIA_H200.json"
MIXTRAL_BF16="$SHIPPED/E=8,N=7168,device_name=NVIDIA_H200.json"
QWEN_FP8="autotune/vllm_configs/E=128,N=768,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"
FP8=(shape.dtype=fp8_w8a8 "shape.block_shape=[128,128]")
source benchmarks/campaign/steps.sh

smi | tee "$R/gpu_$PHASE.csv"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))" | tee -a "$R/campaign_$PHASE.log"
if [ "$PHASE" = 1 ]; then
  tune qwen3_fp8 130 qwen3_30b_a3b_tp1 "$QWEN_FP8" "${FP8[@]}"
  g=$R/qwen3_fp8_grid; mkdir -p "$g"; t0=$(date +%s)
  timeout -k 15 -s INT 280 python3 -m autotune shape=qwen3_30b_a3b_tp1 "${FP8[@]}" device=auto \
    sampler=grid pruner=screen "buckets=[1,16]" benchmark.compile_workers=14 progress=false \
    storage=sqlite:///$g/grid.db output_dir=$g table_dir=$g/tables >"$g/grid.log" 2>&1
  log "grid rc=$? wall $(( $(date +%s) - t0 )) s"; grep -v "INFO\]" "$g/grid.log" | tail -4
  tune qwen3_bf16_a 150 qwen3_30b_a3b_tp1 "$QWEN_BF16" sampler.seed=0 benchmark.seed=0
elif [ "$PHASE" = 2 ]; then  # phase 1's steps ran into their bounds: resume A, then the rest
  tune qwen3_bf16_a 80 qwen3_30b_a3b_tp1 "$QWEN_BF16" sampler.seed=0 benchmark.seed=0
  tune qwen3_bf16_b 190 qwen3_30b_a3b_tp1 "$QWEN_BF16" sampler.seed=1 benchmark.seed=1
  compare qwen3_bf16_compare 120 --shape qwen3_30b_a3b_tp1 --shipped "$QWEN_BF16" --rounds 3 \
    --tuned "a=$(ls $R/qwen3_bf16_a/E=*.json)" "b=$(ls $R/qwen3_bf16_b/E=*.json)"
  compare qwen3_fp8_vs_grid 50 --shape qwen3_30b_a3b_tp1 --shipped "$QWEN_FP8" --buckets 1,16 \
    --tuned "tuned=$(ls $R/qwen3_fp8/E=*.json)" --tables "$R/qwen3_fp8_grid/tables/*.json" \
    --rounds 5 "${FP8[@]}"
  tune mixtral_bf16 80 mixtral_8x7b_tp2 "$MIXTRAL_BF16" "buckets=[64,128,256]"
elif [ "$PHASE" = 3 ]; then
  g=$R/qwen3_fp8_grid; t0=$(date +%s)
  timeout -k 15 -s INT 250 python3 -m autotune shape=qwen3_30b_a3b_tp1 "${FP8[@]}" device=auto \
    sampler=grid pruner=screen "buckets=[1,16]" benchmark.compile_workers=14 progress=false \
    storage=sqlite:///$g/grid.db output_dir=$g table_dir=$g/tables >"$g/grid_resume.log" 2>&1
  log "grid resume rc=$? wall $(( $(date +%s) - t0 )) s"
  compare qwen3_fp8_vs_grid_2 70 --shape qwen3_30b_a3b_tp1 --shipped "$QWEN_FP8" --buckets 1,16 \
    --tuned "tuned=$(ls $R/qwen3_fp8/E=*.json)" --tables "$g/tables/*.json" --rounds 5 "${FP8[@]}"
else  # PHASE=4: the session's files travel with the checkout (benchmarks/fidelity_h200/session6)
  S=benchmarks/fidelity_h200/session6
  tune qwen3_fp8_fixed 60 qwen3_30b_a3b_tp1 "$QWEN_FP8" "${FP8[@]}" "buckets=[1,16]"
  compare qwen3_fp8_fixed_vs_grid 35 --shape qwen3_30b_a3b_tp1 --shipped "$QWEN_FP8" \
    --buckets 1,16 --tuned "fixed=$(ls $R/qwen3_fp8_fixed/E=*.json)" \
    "first=$(ls $S/qwen3_fp8/E=*.json)" --tables "benchmarks/tables/*E128_N768*.json" \
    --rounds 5 "${FP8[@]}"
  compare qwen3_bf16_compare_2 30 --shape qwen3_30b_a3b_tp1 --shipped "$QWEN_BF16" --rounds 5 \
    --buckets 1,1536,2048 --tuned "a=$(ls $S/qwen3_bf16_a/E=*.json)" "b=$(ls $S/qwen3_bf16_b/E=*.json)"
fi
log "phase $PHASE done"
tar czf "$OUT/s6_$PHASE.tgz" --exclude s6/triton -C /tmp s6
