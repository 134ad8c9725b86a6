#!/usr/bin/env bash
# GPU campaign, call A (a 2-GPU H100 machine), minimax_m25_tp4 (E=256 N=384 K=3072 top-8, fp8 block):
#   phase 0: kernel alignment bench + compile-only check (GPU 0) | GPU tests (GPU 1)
#   phase 1: exhaustive grid at M=16 (GPU 0)                   | exhaustive grid at M=256 (GPU 1)
#   phase 2: hot/cold L2 and fault containment (GPU 0)         | second exhaustive pass at M=16 (GPU 1)
# Every step is bounded so the call ends inside the device tool's 10 minutes; everything is packed
# into $OUT/campaign_a.tgz (the tool brings back at most 8 files).
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
FINAL=${OUT:-/tmp/out}; W=/tmp/campaign_a; rm -rf "$W"; mkdir -p "$W" "$FINAL"
log() { echo "[$(date +%T)] $*" | tee -a "$W/campaign.log"; }
smi >"$W/gpu_start.csv"; cat "$W/gpu_start.csv"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))" | tee -a "$W/campaign.log"
grid() {  # grid GPU M TAG TIMEOUT
  CUDA_VISIBLE_DEVICES=$1 timeout -s INT "$4" python3 -m autotune shape=minimax_m25_tp4 device=auto sampler=grid \
    "buckets=[$2]" benchmark.compile_workers=14 progress=false \
    storage=sqlite:///$W/grid_$3.db output_dir=$W/grid_$3 table_dir=$W/tables_$3 >"$W/grid_$3.log" 2>&1
  log "grid $3 (M=$2) rc=$?"; tail -4 "$W/grid_$3.log"
}

log "phase 0"
( CUDA_VISIBLE_DEVICES=0 timeout 120 python3 benchmarks/kernel/align_bench.py --out "$W/align" >"$W/align.log" 2>&1
  log "align rc=$?" ) &
( CUDA_VISIBLE_DEVICES=1 timeout 150 python3 -m pytest -q -p no:cacheprovider tests/kernel/test_compiler.py \
    tests/kernel/test_align.py tests/kernel/test_quant.py tests/test_gpu_bench.py >"$W/gpu_tests.log" 2>&1
  log "gpu tests rc=$?" ) &
wait; tail -22 "$W/align.log"; tail -6 "$W/gpu_tests.log"

log "phase 1"
grid 0 16 m16a 190 &
grid 1 256 m256 190 &
wait

log "phase 2"
( CUDA_VISIBLE_DEVICES=0 timeout 180 python3 benchmarks/benchmarker/campaign.py --out "$W/bench" --skip grid \
    --grid-db "$W/grid_m16a.db" \
    >"$W/bench.log" 2>&1; log "bench rc=$?" ) &
grid 1 16 m16b 180 &
wait; tail -30 "$W/bench.log"

smi >"$W/gpu_end.csv"
log done
cp "$W/campaign.log" "$FINAL/"
tar czf "$FINAL/campaign_a.tgz" -C "$W" .
