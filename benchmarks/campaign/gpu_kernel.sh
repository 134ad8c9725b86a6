#!/usr/bin/env bash
# GPU campaign (one GPU), the kernel: the weight-read roofline at small M against a plain read of
# the same bytes (benchmarks/kernel/roofline.py), then the whole kernel suite compiled
# (TRITON_INTERPRET=0: every kernel test on CUDA tensors, bf16 and the gpu-marked tests included)
# and the GPU benchmarker's tests. Packed into $OUT.
#   TAG=kernel benchmarks/campaign/gpu_kernel.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
FINAL=${OUT:-/tmp/out}; TAG=${TAG:-kernel}; W=/tmp/$TAG; rm -rf "$W"; mkdir -p "$W" "$FINAL"
log() { echo "[$(date +%T)] $*" | tee -a "$W/campaign.log"; }
smi >"$W/gpu_start.csv"; cat "$W/gpu_start.csv"
t0=$(date +%s)
timeout "${ROOF_LIMIT:-300}" python3 benchmarks/kernel/roofline.py --out "$W/roofline" >"$W/roofline.log" 2>&1
log "roofline rc=$? in $(( $(date +%s) - t0 )) s"; tail -8 "$W/roofline.log"
t0=$(date +%s)
timeout "${TEST_LIMIT:-240}" python3 -m pytest -q -p no:cacheprovider -n 8 tests/kernel tests/test_gpu_bench.py \
  >"$W/gpu_tests.log" 2>&1
log "kernel suite (TRITON_INTERPRET=0) rc=$? in $(( $(date +%s) - t0 )) s"; tail -15 "$W/gpu_tests.log"
smi >"$W/gpu_end.csv"
log done
cp "$W/campaign.log" "$FINAL/"
tar czf "$FINAL/$TAG.tgz" -C "$W" .
