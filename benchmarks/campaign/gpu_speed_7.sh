#!/usr/bin/env bash
# GPU campaign, session 15: whole tunes of qwen3_30b_a3b_tp1 (bf16 and fp8 block) with this
# checkout's defaults against session 14's final code (8e2973b, unpacked in .base/ by
# `git archive 8e2973b autotune conf search_spaces`, or from .whl/base.tgz, the same packed to
# keep the carried files under the device's limit), each from an empty storage and its own empty
# Triton cache; the files re-timed in another process at 5 + 20 replays (the judge); a cold compile
# pool taken apart (../speed/profile_compile_pool.py); the GPU tests.
#
#   PHASE=1 STEPS="pool base_bf16 base_fp8" bash benchmarks/campaign/gpu_speed_7.sh
#   PHASE=2 STEPS="new_bf16 new_fp8 judge_bf16 judge_fp8 gputest" bash benchmarks/campaign/gpu_speed_7.sh
#
# Session 15 ran `PHASE=1 STEPS="pool base_bf16 new_bf16 judge_bf16"` on an H200 (its `new` was
# the 3-round trial, kept as ../speed/h200/session15/qwen3_bf16_r3; the pool step with a
# `--launchers with without` option of the profile script, since removed with the change it
# measured), then `PHASE=2 STEPS="new_bf16 judge_bf16 base_fp8 new_fp8 judge_fp8"`, which ran on an
# H100 (KEPT pointed at the H200 base) and hit its 380 s limit in judge_fp8.
#
# judge_* compares the new file with the base file of this call, or else of an earlier call
# committed under $KEPT (a call's machine does not outlive it), and with vLLM's shipped H200 file.
set -uo pipefail
cd "$(dirname "$0")/../.."
R=/tmp/s15; KEPT=${KEPT:-benchmarks/speed/h200/session15}; POOL_ARGS="--start spawn"
source benchmarks/campaign/speed_campaign.sh
