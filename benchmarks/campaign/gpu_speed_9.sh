#!/usr/bin/env bash
# GPU campaign, sessions 17-18 (for the next GPU): whole tunes of qwen3_30b_a3b_tp1 with this
# checkout's defaults (the compile pool's server started before the plan; since session 18, 2
# re-timing rounds up to M=512: TAG=r3 NEW_ARGS=retime_rounds=3 tunes without), with the measuring
# worker forked from that server (TAG=fork: benchmark.worker_from_server=true) and with the two
# bucket loops (TAG=two), against session 16's final code (f81bc43, unpacked in .base/ from
# .whl/base.tgz, which is `git archive f81bc43 autotune conf search_spaces` gzipped; measured on
# an H100 in session 17: start-up 13.2 s), each from an empty storage and its own empty Triton
# cache; all the files of a dtype re-timed together in another process at 5 + 20 replays
# (judgeall_*), with vLLM's shipped H200 file and vLLM's default.
#
#   PHASE=1 STEPS="new_bf16" bash benchmarks/campaign/gpu_speed_9.sh;
#   PHASE=1 TAG=fork NEW_ARGS=benchmark.worker_from_server=true STEPS="new_bf16" \
#     bash benchmarks/campaign/gpu_speed_9.sh;
#   PHASE=1 TAG=two NEW_ARGS="benchmark.worker_from_server=true from_both_ends=true" \
#     STEPS="new_bf16 base_bf16 judgeall_bf16 gputest" bash benchmarks/campaign/gpu_speed_9.sh
#
# and the same for fp8 in a second call (PHASE=2, steps *_fp8). The GPU tests run the default
# (spawned) worker; a tune with TAG=fork is the forked worker's run on the GPU.
set -uo pipefail
cd "$(dirname "$0")/../.."
R=/tmp/s18; KEPT=${KEPT:-benchmarks/speed/h200/session18}
source benchmarks/campaign/speed_campaign.sh
