#!/usr/bin/env bash
# Tune MiniMax-M2.5 at TP4 (E=256 N=384 K=3072 top-8, fp8_w8a8 block [128,128]) on one H100, compare
# every bucket with vLLM's default config and with the H100 file vLLM ships for this shape, and
# write here: the vLLM file, its SGLang copy, the report (markdown, JSON, plots) and the studies.
#
#   benchmarks/minimax_m25_tp4_h100.sh [key=value ...]      # extra overrides, e.g. trials=32
#
# Resumable: the studies are in benchmarks/minimax_m25_tp4_h100/studies.db; run it again with that
# file in place and it goes on where it stopped (nothing measured or re-timed twice). The run is
# stopped with SIGINT after $LIMIT seconds (default 540, under a 10-minute command limit): finished
# trials and verified entries are kept. When $OUT is set (the device tool), the folder is packed
# into $OUT/minimax_m25_tp4_h100.tgz, since the file names hold characters $OUT does not carry.
#
# On the device tool: run ../shared/device/wheels.sh here once, then (carry .whl)
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && \
#     benchmarks/minimax_m25_tp4_h100.sh
# Unpack the .tgz here afterwards. Without matplotlib there the report has no plots; draw them here:
#   python -m autotune.report storage=benchmarks/minimax_m25_tp4_h100/studies.db \
#     output_dir=benchmarks/minimax_m25_tp4_h100
set -uo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/minimax_m25_tp4_h100
mkdir -p "$out"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv >"$out/gpu_start.csv" 2>/dev/null
timeout -s INT "${LIMIT:-540}" python -m autotune shape=minimax_m25_tp4 device=auto \
  compare_with=tests/data/vllm_configs sglang=true \
  "storage=sqlite:///$out/studies.db" "output_dir=$out" "$@"
rc=$?
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv >"$out/gpu_end.csv" 2>/dev/null
python -m autotune.check "$out"/*.json "$out"/triton_*
if [ -n "${OUT:-}" ]; then tar czf "$OUT/minimax_m25_tp4_h100.tgz" "$out"; fi
exit $rc
