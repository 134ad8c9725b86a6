#!/usr/bin/env bash
# GPU campaign, session 10: whole tunes of qwen3_30b_a3b_tp1 (bf16 and fp8 block) with 10 warmup
# + 6 timed replays (the protocol that agreed with 5 + 20 at every profiled bucket,
# benchmarks/speed/README.md) and the anchored re-timing of the configs added after the first pass
# (consolidate/finalists.py), each from an empty storage and its own empty Triton cache; their
# files re-timed in another process at 5 + 20 replays (as every earlier judge) against the
# previous default's files of the same shape and vLLM's shipped file.
#
#   STEPS="new_bf16 new_fp8 judge_bf16 judge_fp8" bash benchmarks/campaign/gpu_speed_4.sh
#
# new_*: the tune above (tag $TAG, default t1). base_*: the previous default (5 + 20 replays, the
# code of edb5938, unpacked in .base/ by `git archive edb5938 autotune conf search_spaces`), for
# a card that has no earlier files. judge_*: the new file against the previous default's: the
# base_* file of this card when there is one, else the H200 files of sessions 8 (bf16 a4) and 9
# (fp8 default); and the t1 file, for a later tag (run-to-run agreement). Results in /tmp/s10, packed into $OUT after each step.
set -uo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/campaign/setup.sh
R=/tmp/s10; PHASE=${PHASE:-1}; TAG=${TAG:-t1}; mkdir -p "$R"
source benchmarks/campaign/steps.sh
smi | tee -a "$R/gpu_$PHASE.csv"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))" | tee -a "$R/campaign_$PHASE.log"
pack() { tar czf "$OUT/s10_$PHASE.tgz" --exclude 'triton*' -C /tmp s10; }
source benchmarks/campaign/qwen3.sh
H200_bf16="a4=$(ls benchmarks/fidelity_h200/session8/qwen3_bf16_a4/E=*.json)"
H200_fp8="default=$(ls benchmarks/speed/h200/session9/qwen3_fp8_default/E=*.json)"
NEW=(benchmark.warmup_replays=10 benchmark.replays=6)
# Without STEPS: on an H200 both new tunes and their judges; elsewhere the bf16 pair (new, base)
# and its judge (the fp8 pair in a second call: STEPS="new_fp8 base_fp8 judge_fp8").
if [ -z "${STEPS:-}" ]; then
  if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
    STEPS="new_bf16 new_fp8 judge_bf16 judge_fp8"; else STEPS="new_bf16 base_bf16 judge_bf16"; fi
fi
log "steps: $STEPS"
for step in $STEPS; do
  d=${step#*_}; dt="DTYPE_$d[@]"; shipped="SHIPPED_$d"
  case $step in
    new_*) TRITON_CACHE_DIR=$R/triton_${d}_$TAG TUNE_TAIL=3 \
             tune qwen3_${d}_$TAG 200 $SHAPE "${!shipped}" "${!dt}" "${NEW[@]}" ;;
    base_*) (cd .base && PYTHONPATH=/tmp/site:$PWD TRITON_CACHE_DIR=$R/triton_${d}_base \
             TUNE_TAIL=3 tune qwen3_${d}_base 260 $SHAPE "$OLDPWD/${!shipped}" "${!dt}") ;;
    judge_*) if ls $R/qwen3_${d}_base/E=*.json >/dev/null 2>&1; then
               old="base=$(ls $R/qwen3_${d}_base/E=*.json)"; else old="H200_$d"; old=${!old}; fi
             [ "$TAG" != t1 ] && [ -d $R/qwen3_${d}_t1 ] && old="$old t1=$(ls $R/qwen3_${d}_t1/E=*.json)"
             TRITON_CACHE_DIR=$R/triton_${d}_$TAG compare qwen3_${d}_${TAG}_judge 90 --shape $SHAPE \
               --shipped "${!shipped}" --rounds 5 --tuned "$TAG=$(ls $R/qwen3_${d}_$TAG/E=*.json)" $old \
               -- "${JUDGE[@]}" "${!dt}" ;;
  esac
  pack
done
smi | tee -a "$R/gpu_$PHASE.csv"
pack
