#!/usr/bin/env bash
# GPU campaign on a 2-GPU host: the rest of the M=256 grid (resumed), one planted fault in a small
# tune, then 1 vs 2 GPUs on the same tune (benchmarks/scaleout/measure.py, empty Triton caches).
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
FINAL=${OUT:-/tmp/out}; mkdir -p "$FINAL"
smi | tee "$FINAL/gpu_start.csv"
CUDA_VISIBLE_DEVICES=0 GRID_M=256 GRID_LIMIT=${GRID_LIMIT:-70} TAG=grid_256b RESUME_DB=benchmarks/grids_h200/grid.db \
  bash benchmarks/campaign/gpu_grids.sh 2>&1 | tail -4
t0=$(date +%s)
CUDA_VISIBLE_DEVICES=0 timeout ${FAULT_LIMIT:-60} python3 benchmarks/benchmarker/campaign.py --out /tmp/fault \
  --skip grid agree l2 >/tmp/fault.log 2>&1
echo "fault rc=$? in $(( $(date +%s) - t0 )) s"; grep -v "INFO\]" /tmp/fault.log | tail -c 1500
timeout ${SCALE_LIMIT:-180} python3 benchmarks/scaleout/measure.py --cold --buckets 1 16 64 256 benchmark.compile_workers=14 2>&1 | tail -8
smi >"$FINAL/gpu_end.csv"
cp /tmp/fault.log "$FINAL/"
tar czf "$FINAL/x2.tgz" /tmp/fault benchmarks/scaleout
