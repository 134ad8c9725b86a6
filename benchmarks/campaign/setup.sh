# Sourced by the campaign scripts, from the repository root on a GPU machine: the wheels that
# machine lacks (carried in .whl/, see ../shared/device/wheels.sh), installed once per machine; the
# environment every step runs with; `smi`, the card's state for the record.
if [ ! -d /tmp/site/optuna ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TRITON_INTERPRET=0
smi() { nvidia-smi --query-gpu=index,name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv; }
