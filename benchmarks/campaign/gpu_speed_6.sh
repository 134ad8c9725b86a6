#!/usr/bin/env bash
# GPU campaign, session 13: whole tunes of qwen3_30b_a3b_tp1 (bf16 and fp8 block) with this
# checkout's defaults against the code this session started from (a3804bb, unpacked in .base/ by
# `git archive a3804bb autotune conf search_spaces`), each from an empty storage and its own empty
# Triton cache; the files re-timed in another process at 5 + 20 replays; a cold compile pool taken
# apart (../speed/profile_compile_pool.py).
#
#   PHASE=1 STEPS="pool base_bf16 base_fp8" bash benchmarks/campaign/gpu_speed_6.sh
#   PHASE=2 STEPS="new_bf16 judge_bf16 new_fp8 judge_fp8" bash benchmarks/campaign/gpu_speed_6.sh
#
# Session 14 ran `PHASE=1 STEPS="base_bf16 new_bf16 scr_bf16 judge_bf16 gputest"` and
# `PHASE=2 STEPS="base_fp8 new_fp8 scr_fp8 judge_fp8"` (results in ../speed/h100/session14/).
# scr_* tunes as new_* with the first look on (pruner=screen, tagged scr); its `new` ran with
# pruner=none, the default then (the look is the default since). gputest: the GPU test of the look.
# judge_* compares the new file (and scr's, when this call tuned one) with the base file of this
# run, or else of an earlier call committed under $KEPT (a call's machine does not outlive it), or
# else session 12's base; and with session 12's h1 file.
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
R=/tmp/s13; PHASE=${PHASE:-1}; TAG=${TAG:-n1}; mkdir -p "$R"
KEPT=${KEPT:-benchmarks/speed/h100/session13}
source benchmarks/campaign/steps.sh
smi | tee -a "$R/gpu_$PHASE.csv"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))" | tee -a "$R/campaign_$PHASE.log"
pack() { tar czf "$OUT/s13_$PHASE.tgz" --exclude 'triton*' -C /tmp s13; }
source benchmarks/campaign/qwen3.sh
S12=benchmarks/speed/h100/session12
log "steps: $STEPS"
for step in $STEPS; do
  d=${step#*_}; dt="DTYPE_$d[@]"; shipped="SHIPPED_$d"
  case $step in
    gputest) timeout 90 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu_bench.py \
               -k look > $R/gpu_tests.log 2>&1; log "gputest rc=$?"; tail -3 $R/gpu_tests.log ;;
    pool) timeout 240 python3 benchmarks/speed/profile_compile_pool.py --out $R/pool_profile.json \
            --workers 1 14 > $R/pool_profile.log 2>&1; log "pool rc=$?"; cat $R/pool_profile.log ;;
    new_*) TRITON_CACHE_DIR=$R/triton_${d}_$TAG TUNE_TAIL=3 \
             tune qwen3_${d}_$TAG 240 $SHAPE "${!shipped}" "${!dt}" ;;
    scr_*) TRITON_CACHE_DIR=$R/triton_${d}_scr TUNE_TAIL=3 \
             tune qwen3_${d}_scr 240 $SHAPE "${!shipped}" "${!dt}" pruner=screen ;;
    base_*) (cd .base && PYTHONPATH=/tmp/site:$PWD TRITON_CACHE_DIR=$R/triton_${d}_base \
             TUNE_TAIL=3 tune qwen3_${d}_base 240 $SHAPE "$OLDPWD/${!shipped}" "${!dt}") ;;
    judge_*) base=$(ls $R/qwen3_${d}_base/E=*.json $KEPT/qwen3_${d}_base/E=*.json \
               $S12/qwen3_${d}_base/E=*.json 2>/dev/null | head -1)
             s12=$(ls $S12/qwen3_${d}_h1/E=*.json); scr=$(ls $R/qwen3_${d}_scr/E=*.json 2>/dev/null)
             TRITON_CACHE_DIR=$R/triton_${d}_$TAG compare qwen3_${d}_${TAG}_judge 150 --shape $SHAPE \
               --shipped "${!shipped}" --rounds 5 --tuned "$TAG=$(ls $R/qwen3_${d}_$TAG/E=*.json)" \
               ${scr:+scr=$scr} ${base:+base=$base} s12_h1=$s12 -- "${JUDGE[@]}" "${!dt}" ;;
  esac
  pack
done
smi | tee -a "$R/gpu_$PHASE.csv"
