#!/usr/bin/env bash
# A whole tune on one GPU with the project's defaults unless overridden, from an empty storage (or
# the one already in the folder: resume) and, with COLD=1, an empty Triton cache; the finalists are
# re-timed against vLLM's default and the file given as COMPARE (if any). Writes into
# benchmarks/$TAG/ (file, SGLang copy, report, studies) and packs it into $OUT/$TAG.tgz.
#   TAG=minimax_m25_tp4_h200 SHAPE=minimax_m25_tp4 COMPARE=tests/data/vllm_configs/E=...json \
#     LIMIT=200 COLD=1 benchmarks/campaign/gpu_tune.sh [key=value ...]
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
if [ "${COLD:-0}" = 1 ]; then export TRITON_CACHE_DIR=$(mktemp -d /tmp/triton_cold.XXXX); fi
out=benchmarks/$TAG; mkdir -p "$out"
compare=(); if [ -n "${COMPARE:-}" ]; then compare=("compare_with='$COMPARE'"); fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv >"$out/gpu_start.csv"
t0=$(date +%s)
timeout -s INT "${LIMIT:-300}" python3 -m autotune shape=$SHAPE device=auto sglang=true progress=false \
  "${compare[@]}" "storage=sqlite:///$out/studies.db" "output_dir=$out" "$@" >>"$out/run.log" 2>&1
rc=$?
echo "[$TAG] rc=$rc wall $(( $(date +%s) - t0 )) s (args: $*)" | tee -a "$out/run.log"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv >"$out/gpu_end.csv"
grep -v "INFO\]" "$out/run.log" | tail -32
python3 -m autotune.check "$out"/*.json 2>&1 | tail -3
if [ -n "${OUT:-}" ]; then tar czf "$OUT/$TAG.tgz" "$out"; fi
