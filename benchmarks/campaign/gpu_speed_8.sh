#!/usr/bin/env bash
# GPU campaign, session 16: whole tunes of qwen3_30b_a3b_tp1 (bf16 and fp8 block) with this
# checkout's defaults (the compile pool forked from a preloaded server; TAG=two adds the two
# bucket loops, `from_both_ends`) against
# session 15's final code (b9a55a6, unpacked in .base/ from .whl/base.tgz, which is
# `git archive b9a55a6 autotune conf search_spaces` gzipped), each from an empty storage and its
# own empty Triton cache; the files re-timed in another process at 5 + 20 replays (the judge); a
# cold compile pool taken apart, spawned and forked (../speed/profile_compile_pool.py); the GPU
# tests.
#
#   PHASE=1 STEPS="pool base_bf16 new_bf16 judge_bf16" bash benchmarks/campaign/gpu_speed_8.sh &&
#   PHASE=1 TAG=two NEW_ARGS=from_both_ends=true STEPS="new_bf16 judge_bf16" \
#     bash benchmarks/campaign/gpu_speed_8.sh
#   PHASE=2 STEPS="base_fp8 new_fp8 judge_fp8 gputest" bash benchmarks/campaign/gpu_speed_8.sh &&
#   PHASE=2 TAG=two NEW_ARGS=from_both_ends=true STEPS="new_fp8 judge_fp8" \
#     bash benchmarks/campaign/gpu_speed_8.sh
#
#   PHASE=3 TAG=journal JOURNAL=1 STEPS="new_bf16 judge_bf16" bash benchmarks/campaign/gpu_speed_8.sh
#
# NEW_ARGS: overrides of the new_* tunes (`two`: the two bucket loops, off by default until
# measured); JOURNAL=1: the studies in a journal file (on a 2-core CPU a third of SQLite's time per
# trial). Written in session 16 (lent no GPU). Session 17 ran its bf16 part on an H100, in one
# call (benchmarks/speed/h100/session17/campaign_1.log):
#   PHASE=1 STEPS="new_bf16" ...; PHASE=1 TAG=two NEW_ARGS=from_both_ends=true \
#     STEPS="new_bf16 judgeall_bf16 base_bf16 gputest" ...   (gputest cut by the call's limit,
#   run in a second call)
#
# judge_* compares the new file with the base file of this call, or else of an earlier call
# committed under $KEPT (a call's machine does not outlive it), and with vLLM's shipped H200 file.
set -uo pipefail
cd "$(dirname "$0")/../.."
R=/tmp/s17; KEPT=${KEPT:-benchmarks/speed/h100/session17}; POOL_ARGS="--start spawn forkserver"
source benchmarks/campaign/speed_campaign.sh
