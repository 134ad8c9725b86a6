#!/usr/bin/env bash
# GPU campaign, session 11: whole tunes of qwen3_30b_a3b_tp1 (bf16 and fp8 block) on an H200 with
# this checkout's defaults, each from an empty storage and its own empty Triton cache, their files
# re-timed in another process at 5 + 20 replays (as every earlier judge); and a cold compile
# pool taken apart (../speed/profile_compile_pool.py).
#
#   STEPS="pool base_bf16 new_bf16 judge_bf16" bash benchmarks/campaign/gpu_speed_5.sh
#
# new_*: the tune (tag $TAG, default h1). base_*: the same with the code this session started from
# (dacf8ba, unpacked in .base/ by `git archive dacf8ba autotune conf search_spaces`). judge_*: the
# new file against the base file of this run, and the earlier files of the same card type (below).
# Results in /tmp/s11, packed into $OUT after each step.
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
R=/tmp/s11; PHASE=${PHASE:-1}; TAG=${TAG:-h1}; mkdir -p "$R"
source benchmarks/campaign/steps.sh
smi | tee -a "$R/gpu_$PHASE.csv"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))" | tee -a "$R/campaign_$PHASE.log"
pack() { tar czf "$OUT/s11_$PHASE.tgz" --exclude 'triton*' -C /tmp s11; }
source benchmarks/campaign/qwen3.sh
# The earlier files of this card type: H200, sessions 8 (bf16 a4) and 9 (fp8 default); H100, session
# 10 (base: the defaults before 10 + 6 replays; t1: the code this session started from, same defaults).
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H100; then
  S10=benchmarks/speed/h100/session10
  OLD_bf16="base=$(ls $S10/qwen3_bf16_base/E=*.json) t1=$(ls $S10/qwen3_bf16_t1/E=*.json)"
  OLD_fp8="base=$(ls $S10/qwen3_fp8_base/E=*.json) t1=$(ls $S10/qwen3_fp8_t1/E=*.json)"
else
  OLD_bf16="a4=$(ls benchmarks/fidelity_h200/session8/qwen3_bf16_a4/E=*.json)"
  OLD_fp8="default=$(ls benchmarks/speed/h200/session9/qwen3_fp8_default/E=*.json)"
fi
log "steps: $STEPS"
for step in $STEPS; do
  d=${step#*_}; dt="DTYPE_$d[@]"; shipped="SHIPPED_$d"
  case $step in
    pool) timeout 240 python3 benchmarks/speed/profile_compile_pool.py --out $R/pool_profile.json \
            --workers 1 14 > $R/pool_profile.log 2>&1; log "pool rc=$?"; cat $R/pool_profile.log ;;
    new_*) TRITON_CACHE_DIR=$R/triton_${d}_$TAG TUNE_TAIL=3 \
             tune qwen3_${d}_$TAG 240 $SHAPE "${!shipped}" "${!dt}" ;;
    base_*) (cd .base && PYTHONPATH=/tmp/site:$PWD TRITON_CACHE_DIR=$R/triton_${d}_base \
             TUNE_TAIL=3 tune qwen3_${d}_base 240 $SHAPE "$OLDPWD/${!shipped}" "${!dt}") ;;
    judge_*) old="OLD_$d"; old=${!old}
             f=$(ls $R/qwen3_${d}_base/E=*.json 2>/dev/null) && old="base=$f ${old#base=* }"
             TRITON_CACHE_DIR=$R/triton_${d}_$TAG compare qwen3_${d}_${TAG}_judge 120 --shape $SHAPE \
               --shipped "${!shipped}" --rounds 5 --tuned "$TAG=$(ls $R/qwen3_${d}_$TAG/E=*.json)" $old \
               -- "${JUDGE[@]}" "${!dt}" ;;
  esac
  pack
done
smi | tee -a "$R/gpu_$PHASE.csv"
pack
