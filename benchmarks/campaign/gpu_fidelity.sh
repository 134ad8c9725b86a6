#!/usr/bin/env bash
# GPU campaign (one H200) for timing fidelity: bf16 tuned with vLLM's variant rule (no SWAP_AB),
# hot-L2 vs layer-stack timing, two separate tunes for reproducibility, exhaustive grids at
# M = 1 and 16, and every file re-timed interleaved in layer-stack mode against vLLM's shipped
# H200 file, vLLM's default and the grid's best (compare.py). Two phases, one device call each:
#   PHASE=1 benchmarks/campaign/gpu_fidelity.sh   # qwen3 bf16 layers (cold cache) + hot; mixtral
#   PHASE=2 benchmarks/campaign/gpu_fidelity.sh   # grids; qwen3 second layers tune; compare
# Every step is bounded (SIGINT: the run writes what it settled) and packed into $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
export TRITON_CACHE_DIR=/tmp/triton_fidelity  # empty on a fresh machine: phase 1 starts cold
R=benchmarks/fidelity_h200; mkdir -p "$R"
QWEN_SHIPPED="$R/shipped/E=128,N=768,device_name=NVIDIA_H200.json"
MIXTRAL_SHIPPED="$R/shipped/E=8,N=7168,device_name=NVIDIA_H200.json"
TUNE_TAIL=24  # tune TAG LIMIT SHAPE SHIPPED key=value...: the last 24 lines of its output
source benchmarks/campaign/steps.sh

smi | tee "$R/gpu_$PHASE.csv"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))" | tee -a "$R/campaign_$PHASE.log"
if [ "$PHASE" = 1 ]; then
  tune qwen3_30b_bf16_layers_a 200 qwen3_30b_a3b_tp1 "$QWEN_SHIPPED" benchmark.l2=layers sampler.seed=0
  tune qwen3_30b_bf16_hot 120 qwen3_30b_a3b_tp1 "$QWEN_SHIPPED" benchmark.l2=hot sampler.seed=0
  tune mixtral_8x7b_bf16_layers 220 mixtral_8x7b_tp2 "$MIXTRAL_SHIPPED" benchmark.l2=layers
elif [ "$PHASE" = 3 ]; then  # what phase 2 can do in 4 minutes of device time: decode sizes
  tune qwen3_30b_bf16_layers_b 100 qwen3_30b_a3b_tp1 "$QWEN_SHIPPED" benchmark.l2=layers \
    sampler.seed=1 benchmark.seed=1 "buckets=[1,2,4,8,16,32,64]"
  tar czf "$OUT/fidelity_3a.tgz" "$R/qwen3_30b_bf16_layers_b"
  t0=$(date +%s)
  timeout -k 10 130 python3 benchmarks/campaign/compare.py --shape qwen3_30b_a3b_tp1 \
    --tuned "layers_a=$(ls $R/qwen3_30b_bf16_layers_a/E=*.json)" \
    "layers_b=$(ls $R/qwen3_30b_bf16_layers_b/E=*.json)" "hot=$(ls $R/qwen3_30b_bf16_hot/E=*.json)" \
    --shipped "$QWEN_SHIPPED" --buckets 1,2,4,8,16,32,64,256,1024 --rounds 3 \
    --out "$R/qwen3_30b_bf16_compare" benchmark.l2=layers >"$R/qwen3_30b_bf16_compare.log" 2>&1
  log "compare rc=$? wall $(( $(date +%s) - t0 )) s"; tail -30 "$R/qwen3_30b_bf16_compare.log"
else
  g=$R/qwen3_30b_bf16_grid; mkdir -p "$g"; t0=$(date +%s)
  timeout -k 15 -s INT 270 python3 -m autotune shape=qwen3_30b_a3b_tp1 device=auto sampler=grid \
    pruner=screen benchmark.l2=layers "buckets=[1,16]" benchmark.compile_workers=14 \
    progress=false storage=sqlite:///$g/grid.db output_dir=$g table_dir=$g/tables >"$g/grid.log" 2>&1
  log "grid rc=$? wall $(( $(date +%s) - t0 )) s"; grep -v "INFO\]" "$g/grid.log" | tail -8
  tune qwen3_30b_bf16_layers_b 120 qwen3_30b_a3b_tp1 "$QWEN_SHIPPED" benchmark.l2=layers \
    sampler.seed=1 benchmark.seed=1
  t0=$(date +%s)
  timeout 150 python3 benchmarks/campaign/compare.py --shape qwen3_30b_a3b_tp1 \
    --tuned "layers_a=$(ls $R/qwen3_30b_bf16_layers_a/E=*.json)" \
    "layers_b=$(ls $R/qwen3_30b_bf16_layers_b/E=*.json)" "hot=$(ls $R/qwen3_30b_bf16_hot/E=*.json)" \
    --shipped "$QWEN_SHIPPED" --tables "$g/tables/*.json" --rounds 3 --out "$R/qwen3_30b_bf16_compare" \
    benchmark.l2=layers >"$R/qwen3_30b_bf16_compare.log" 2>&1
  log "compare rc=$? wall $(( $(date +%s) - t0 )) s"; tail -40 "$R/qwen3_30b_bf16_compare.log"
fi
log "phase $PHASE done"
tar czf "$OUT/fidelity_$PHASE.tgz" "$R"/*.log "$R"/*/*.log "$R"/*compare* 2>/dev/null
