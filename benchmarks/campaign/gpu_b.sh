#!/usr/bin/env bash
# GPU campaign, call B (one GPU), minimax_m25_tp4 (E=256 N=384 K=3072 top-8, fp8 block [128,128]),
# in order: GPU tests; exhaustive grid at M=16 (pass a, cold compile cache); fault containment;
# exhaustive grid at M=16 again (pass b, warm cache); both passes' top 5 re-timed interleaved, and
# repeatability.
# Bounded to end inside the device tool's 10 minutes; packed into $OUT/campaign_b.tgz.
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
FINAL=${OUT:-/tmp/out}; W=/tmp/campaign_b; rm -rf "$W"; mkdir -p "$W" "$FINAL"
log() { echo "[$(date +%T)] $*" | tee -a "$W/campaign.log"; }
smi >"$W/gpu_start.csv"; cat "$W/gpu_start.csv"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))" | tee -a "$W/campaign.log"
grid() {  # grid GPU M TAG TIMEOUT
  local t0=$(date +%s)
  CUDA_VISIBLE_DEVICES=$1 timeout -s INT "$4" python3 -m autotune shape=minimax_m25_tp4 device=auto sampler=grid \
    "buckets=[$2]" benchmark.compile_workers=14 progress=false \
    storage=sqlite:///$W/grid_$3.db output_dir=$W/grid_$3 table_dir=$W/tables >"$W/grid_$3.log" 2>&1
  log "grid $3 (M=$2) rc=$? in $(( $(date +%s) - t0 )) s"; grep -v INFO "$W/grid_$3.log" | tail -4
}
bench() { CUDA_VISIBLE_DEVICES=$1 timeout "$2" python3 benchmarks/benchmarker/campaign.py --out "$W/bench_$3" "${@:4}" \
    >"$W/bench_$3.log" 2>&1; log "bench $3 rc=$?"; }

CUDA_VISIBLE_DEVICES=0 timeout 70 python3 -m pytest -q -p no:cacheprovider tests/kernel/test_align.py \
  tests/test_gpu_bench.py >"$W/gpu_tests.log" 2>&1; log "gpu tests rc=$?"; tail -3 "$W/gpu_tests.log"
grid 0 16 m16a 190
bench 0 50 fault --skip grid agree l2
grid 0 16 m16b 170
bench 0 70 agree --skip grid l2 fault --grid-dbs "$W/grid_m16a.db" "$W/grid_m16b.db"
tail -20 "$W/bench_agree.log"
smi >"$W/gpu_end.csv"
log done
cp "$W/campaign.log" "$FINAL/"
tar czf "$FINAL/campaign_b.tgz" -C "$W" .
