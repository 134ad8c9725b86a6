#!/usr/bin/env bash
# GPU campaign (one GPU): a whole tune with the defaults from a cold Triton cache (gpu_tune.sh),
# then its entries re-timed interleaved against the recorded grid's best, vLLM's default and the
# shipped file (compare.py). Packed into $OUT/$TAG.tgz.
#   TAG=deepseek_v3_tp8_h200 SHAPE=deepseek_v3_tp8 \
#     COMPARE='autotune/vllm_configs/E=256,N=256,device_name=NVIDIA_H200,...json' \
#     TABLES='benchmarks/tables/NVIDIA_H200_E256_N256_K7168_fp8block_M*.json' \
#     LIMIT=300 CMP_LIMIT=150 benchmarks/campaign/gpu_tune_vs_grid.sh [key=value ...]
set -uo pipefail
cd "$(dirname "$0")/../.."
COLD=1 OUT= benchmarks/campaign/gpu_tune.sh "$@"
source benchmarks/campaign/setup.sh
out=benchmarks/$TAG
timeout "${CMP_LIMIT:-150}" python3 benchmarks/campaign/compare.py --shape "$SHAPE" \
  --tuned "$(ls "$out"/E=*.json)" --tables "$TABLES" --shipped "$COMPARE" --out "$out/compare" \
  >"$out/compare.log" 2>&1
echo "[$TAG] compare rc=$?"; tail -8 "$out/compare.log"
if [ -n "${OUT:-}" ]; then tar czf "$OUT/$TAG.tgz" "$out"; fi
