#!/usr/bin/env bash
# GPU campaign (one H200), session 7: why GROUP_SIZE_M variants swap order between processes, and
# the on-GPU check of session 6's last two fixes. Layer-stack timing throughout.
#   PHASE=1 benchmarks/campaign/gpu_fidelity_3.sh  # placement.py (seeds, allocation shifts, 16
#                                                 # layers), then gpu_fidelity_2.sh PHASE=4
#   PHASE=2 benchmarks/campaign/gpu_fidelity_3.sh  # placement.py --quick again, in a second process
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
export TRITON_CACHE_DIR=/tmp/s6/triton
R=/tmp/s7; mkdir -p "$R"
log() { echo "[$(date +%T)] $*" | tee -a "$R/campaign_$PHASE.log"; }
smi | tee "$R/gpu_$PHASE.csv"
t0=$(date +%s)
if [ "$PHASE" = 1 ]; then
  timeout -k 10 300 python3 benchmarks/fidelity_h200/placement.py --out "$R/placement_1" \
    2>&1 | tee "$R/placement_1.log" | grep -v "^$"
  log "placement 1 rc=$? wall $(( $(date +%s) - t0 )) s"
  PHASE=4 bash benchmarks/campaign/gpu_fidelity_2.sh 2>&1 | tail -60
else
  timeout -k 10 200 python3 benchmarks/fidelity_h200/placement.py --quick --out "$R/placement_2" \
    2>&1 | tee "$R/placement_2.log" | grep -v "^$"
  log "placement 2 rc=$? wall $(( $(date +%s) - t0 )) s"
fi
smi | tee -a "$R/gpu_$PHASE.csv"
tar czf "$OUT/s7_$PHASE.tgz" -C /tmp s7
