#!/usr/bin/env bash
# On a GPU machine, from the repository root (wheels the machine lacks in .whl/): the GPU lock and
# the parent-death guards with the real GPU benchmarker (measuring worker + compile pool).
#   1. run A tunes qwen35_tp1 on the GPU; run B on the same GPU must refuse in one line (exit 2);
#   2. A's parent is SIGKILLed while it measures; none of its session may be alive 10 s later;
#   3. run C, the same command as A, completes the budget (A's RUNNING trials failed as dead).
# Writes gpu_check.log (and the runs' logs) into ${OUT:-.}.
set -u
out=${OUT:-$PWD}
log() { echo "$@" | tee -a "$out/gpu_check.log"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TRITON_INTERPRET=0
work=$(mktemp -d)
cd "$work"
log "$(nvidia-smi -L)"
log "torch uuid: $(python3 -c 'import torch; print(torch.cuda.get_device_properties(0).uuid)')"
args=(shape=qwen35_tp1 device=auto 'buckets=[1,16,64]' trials=40 patience=null progress=false
      "storage=sqlite:///$work/a.db" "output_dir=$work/a")
in_session() { ps -eo sid=,stat=,pid=,args= | awk -v s="$1" '$1 == s && $2 !~ /^Z/'; }

setsid python3 -m autotune "${args[@]}" >"$out/run_a.log" 2>&1 &
a=$!
for _ in $(seq 180); do
  grep -qs "^$a " /tmp/autotune-gpu-locks/*.lock && break
  sleep 1
done
log "lock files: $(grep -s . /tmp/autotune-gpu-locks/*.lock | cut -c1-160)"
python3 -m autotune shape=qwen35_tp1 device=auto 'buckets=[1]' trials=2 \
  "storage=sqlite:///$work/b.db" "output_dir=$work/b" >"$out/run_b.log" 2>&1
log "run B exit $? (2: refused); its stderr: $(cut -c1-300 "$out/run_b.log")"
log "run B made a storage: $(test -e "$work/b.db" && echo yes || echo no)"

for _ in $(seq 240); do  # until A has measured something: its measuring worker is timing
  n=$(python3 -c "import sqlite3; print(sqlite3.connect('$work/a.db').execute(\"select count(*) from trial_user_attributes where key='measured'\").fetchone()[0])" 2>/dev/null)
  [ "${n:-0}" -ge 5 ] && break
  sleep 1
done
log "A measured ${n:-0} trials; its session before the kill: $(in_session "$a" | wc -l) processes"
in_session "$a" | cut -c1-120 >>"$out/gpu_check.log"
kill -9 "$a"
sleep 10
left=$(in_session "$a" | wc -l)
log "10 s after SIGKILL of A's parent: $left processes of its session alive"
in_session "$a" | cut -c1-120 >>"$out/gpu_check.log"

python3 -m autotune "${args[@]}" >"$out/run_c.log" 2>&1
log "run C exit $?"
grep -E "^M=|wrote|benchmark:" "$out/run_c.log" | cut -c1-200 | tee -a "$out/gpu_check.log"
