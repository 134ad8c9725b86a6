#!/usr/bin/env bash
# GPU campaign (one GPU), minimax_m25_tp4 (E=256 N=384 K=3072 top-8, fp8 block [128,128]):
# exhaustive passes over the `vllm` search space at the batch sizes given, in one process (the
# compile cache warms on the first bucket: the GEMM kernels do not specialize on M), each bucket
# writing its moe-grid-table/1 file; optionally the GPU test suite first.
#   GRID_M="1,64" GRID_LIMIT=360 TESTS=1 [RESUME_DB=grid.db] benchmarks/campaign/gpu_grids.sh
# Bounded by GRID_LIMIT seconds (SIGINT: the bucket in flight is resumable); packed into $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
FINAL=${OUT:-/tmp/out}; TAG=${TAG:-grids}; W=/tmp/$TAG; rm -rf "$W"; mkdir -p "$W" "$FINAL"
if [ -n "${RESUME_DB:-}" ]; then cp "$RESUME_DB" "$W/grid.db"; fi  # an interrupted pass goes on
log() { echo "[$(date +%T)] $*" | tee -a "$W/campaign.log"; }
smi >"$W/gpu_start.csv"; cat "$W/gpu_start.csv"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))" | tee -a "$W/campaign.log"
if [ "${TESTS:-0}" = 1 ]; then
  t0=$(date +%s)
  timeout "${TEST_LIMIT:-200}" python3 -m pytest -q -p no:cacheprovider -n 8 -m gpu tests/ >"$W/gpu_tests.log" 2>&1
  log "gpu tests rc=$? in $(( $(date +%s) - t0 )) s"; tail -15 "$W/gpu_tests.log"
fi
t0=$(date +%s)
timeout -s INT "${GRID_LIMIT:-360}" python3 -m autotune shape=${SHAPE:-minimax_m25_tp4} device=auto sampler=grid \
  "buckets=[${GRID_M:-1,64}]" benchmark.compile_workers=14 progress=false ${EXTRA:-} \
  storage=sqlite:///$W/grid.db output_dir=$W/grid table_dir=$W/tables >"$W/grid.log" 2>&1
log "grid M=${GRID_M:-1,64} rc=$? in $(( $(date +%s) - t0 )) s"; grep -v "INFO\]" "$W/grid.log" | tail -12
grep -E "idle|compile|measur" "$W/grid.log" | tail -6
smi >"$W/gpu_end.csv"
log done
cp "$W/campaign.log" "$FINAL/"
tar czf "$FINAL/$TAG.tgz" -C "$W" .
