# Sourced by the speed campaigns (gpu_speed_7.sh on), from the repository root, after they set R
# (the results folder on the GPU machine) and KEPT (where earlier results are committed), and
# POOL_ARGS where they profile the compile pool: the machine set up, the base code unpacked in
# .base/ from .whl/base.tgz, the card and versions logged, $STEPS run (qwen3.sh: speed_steps).
source benchmarks/campaign/setup.sh
[ -d .base ] || { mkdir .base && tar xzf .whl/base.tgz -C .base; }
PHASE=${PHASE:-1}; TAG=${TAG:-new}; NEW_ARGS=${NEW_ARGS:-}; mkdir -p "$R"
source benchmarks/campaign/steps.sh
smi | tee -a "$R/gpu_$PHASE.csv"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0))" | tee -a "$R/campaign_$PHASE.log"
source benchmarks/campaign/qwen3.sh
speed_steps
smi | tee -a "$R/gpu_$PHASE.csv"
