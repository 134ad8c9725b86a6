# Sourced by the speed campaigns: the shape they tune, vLLM's H200 file each dtype is compared
# with (vLLM ships none for an H100), the overrides of each dtype, and the judge's protocol (5 + 20
# replays, a whole measurement a round: as every earlier judge); and their steps (speed_steps).
SHAPE=qwen3_30b_a3b_tp1
SHIPPED_bf16="benchmarks/fidelity_h200/shipped/E=128,N=768,device_name=NVIDIA_H200.json"
SHIPPED_fp8="autotune/vllm_configs/E=128,N=768,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"
DTYPE_bf16=(); DTYPE_fp8=(shape.dtype=fp8_w8a8 'shape.block_shape=[128,128]')
JUDGE=(benchmark.seed=2 benchmark.warmup_replays=5 benchmark.replays=20 benchmark.steady_max_M=0
       benchmark.rounds_in_worker=false)

# The speed campaigns' steps ($STEPS: pool, base_*, new_*, judge_*, judgeall_*, gputest), from the
# repository root on a GPU machine, after setup.sh and steps.sh, with R, PHASE, TAG and KEPT set;
# the results folder packed into $OUT/<its name>_$PHASE.tgz after each step. POOL_ARGS and
# NEW_ARGS: extra arguments of the pool profile and of the new_* tunes.
speed_steps() {
  local step d dt shipped base
  log "steps: $STEPS"
  for step in $STEPS; do
    d=${step#*_}; dt="DTYPE_$d[@]"; shipped="SHIPPED_$d"
    case $step in
      gputest) timeout 240 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu_bench.py \
                 tests/test_benchmarker_contract.py > $R/gpu_tests.log 2>&1; log "gputest rc=$?"
               tail -3 $R/gpu_tests.log ;;
      pool) timeout 240 python3 benchmarks/speed/profile_compile_pool.py --out $R/pool_profile.json \
              --workers 14 ${POOL_ARGS:-} > $R/pool_profile.log 2>&1; log "pool rc=$?"
            cat $R/pool_profile.log ;;
      new_*) TRITON_CACHE_DIR=$R/triton_${d}_$TAG TUNE_TAIL=3 \
               tune qwen3_${d}_$TAG 240 $SHAPE "${!shipped}" "${!dt}" ${NEW_ARGS:-} ;;
      base_*) (cd .base && PYTHONPATH=/tmp/site:$PWD TRITON_CACHE_DIR=$R/triton_${d}_base \
               TUNE_TAIL=3 tune qwen3_${d}_base 240 $SHAPE "$OLDPWD/${!shipped}" "${!dt}") ;;
      judgeall_*)  # every tune of this dtype in $R at once: one judge's time, the same rounds
               local tuned=() f
               for f in $R/qwen3_${d}_*/E=*.json; do tuned+=("$(basename "$(dirname "$f")" | sed "s/^qwen3_${d}_//")=$f"); done
               TRITON_CACHE_DIR=$R/triton_${d}_$TAG compare qwen3_${d}_all_judge 200 --shape $SHAPE \
                 --shipped "${!shipped}" --rounds 5 --tuned "${tuned[@]}" -- "${JUDGE[@]}" "${!dt}" ;;
      judge_*) base=$(ls $R/qwen3_${d}_base/E=*.json $KEPT/qwen3_${d}_base/E=*.json 2>/dev/null | head -1)
               TRITON_CACHE_DIR=$R/triton_${d}_$TAG compare qwen3_${d}_${TAG}_judge 150 --shape $SHAPE \
                 --shipped "${!shipped}" --rounds 5 --tuned "$TAG=$(ls $R/qwen3_${d}_$TAG/E=*.json)" \
                 ${base:+base=$base} -- "${JUDGE[@]}" "${!dt}" ;;
    esac
    tar czf "$OUT/$(basename "$R")_$PHASE.tgz" --exclude 'triton*' -C "$(dirname "$R")" "$(basename "$R")"
  done
}
