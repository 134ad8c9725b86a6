# Sourced by the campaign scripts after setup.sh, with R (the results folder) and PHASE set: each
# step bounded (SIGINT first: a run writes what it settled; SIGKILL 15 s later), logged with its
# wall time. TUNE_TAIL: how many lines of a tune's output to show (5); JOURNAL=1: the tune's
# studies in a journal file instead of SQLite.
log() { echo "[$(date +%T)] $*" | tee -a "$R/campaign_$PHASE.log"; }

tune() {  # tune TAG LIMIT SHAPE COMPARED key=value...
  local tag=$1 limit=$2 shape=$3 compared=$4; shift 4
  local out=$R/$tag; mkdir -p "$out"; smi >"$out/gpu_start.csv"
  local t0=$(date +%s) storage="sqlite:///$out/studies.db"
  [ -n "${JOURNAL:-}" ] && storage="journal:$out/studies.journal"
  timeout -k 15 -s INT "$limit" python3 -m autotune shape=$shape device=auto progress=false \
    "compare_with='$compared'" "storage=$storage" "output_dir=$out" "$@" \
    >"$out/run.log" 2>&1
  log "$tag rc=$? wall $(( $(date +%s) - t0 )) s ($*)"
  smi >"$out/gpu_end.csv"; grep -v "INFO\]" "$out/run.log" | tail -"${TUNE_TAIL:-5}"
}

compare() {  # compare TAG LIMIT compare.py-arguments...
  local tag=$1 limit=$2; shift 2; local t0=$(date +%s)
  timeout -k 10 "$limit" python3 benchmarks/campaign/compare.py --out "$R/$tag" "$@" \
    >"$R/$tag.log" 2>&1
  log "$tag rc=$? wall $(( $(date +%s) - t0 )) s"; tail -24 "$R/$tag.log"
}

