#!/usr/bin/env bash
# GPU campaign, call C (one GPU): the full 18-bucket tune of minimax_m25_tp4 from an empty storage
# with the default sampler, finalists re-timed against vLLM's default (and the shipped file where
# one exists for the card), report and check; stopped with SIGINT at $LIMIT s, resumable.
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
FINAL=${OUT:-/tmp/out}; mkdir -p "$FINAL"
t0=$(date +%s)
OUT=$FINAL LIMIT=${LIMIT:-330} benchmarks/minimax_m25_tp4_h100.sh benchmark.compile_workers=14 \
  trials=16 patience=8 finalists=2 retime_rounds=3 progress=false 2>&1 | grep -v "INFO\]" | tail -40
echo "wall $(( $(date +%s) - t0 )) s"
