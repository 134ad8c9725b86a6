"""Property: any shape, device and overrides either compose into a valid plan or are refused with
one clear line (UserError, or a Hydra/OmegaConf composition error told in one line); never a
traceback."""

import atexit
import os
import shutil
import string
import tempfile
from pathlib import Path

from hydra.errors import HydraException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf.errors import OmegaConfBaseException

from autotune.__main__ import composition_error
from autotune.config import MAX_BATCH_SIZE, config_root
from autotune.errors import UserError
from autotune.files.names import device_token
from autotune.plan import build_plan
from tests.conftest import compose, run_cli

SHAPES = sorted(p.stem for p in (config_root() / "shape").glob("*.yaml")) + ["llama_tp1"]
DEVICES = sorted(p.stem for p in (config_root() / "device").glob("*.yaml")) + ["a100"]
KEYS = ["shape.tp", "shape.ep", "shape.experts", "shape.hidden_size", "shape.intermediate_size",
        "shape.topk", "shape.dtype", "shape.block_shape", "trials", "patience", "buckets",
        "workers", "search_space", "sampler", "sampler.name", "sampler.n_startup_trials",
        "pruner.name", "benchmark", "benchmark.l2", "benchmark.routing", "device.kind",
        "device.shared_memory_per_block", "storage", "trails", "shape.expertz"]
WORDS = ["fp8_w8a8", "bf16", "fp16", "int8_w8a16", "int4_w4a16", "tpe", "gp", "grid", "random",
         "cmaes", "vllm", "small", "huge", "hot", "cold", "skewed", "replay", "gpu", "cpu",
         "interpreter", "null", "true", "sqlite://", "journal:"]

# Output paths a user may give by mistake (an existing file, a path under it, a name over 255
# bytes) and good ones; they live in a folder made once for the whole module.
SPOT = Path(tempfile.mkdtemp(prefix="autotune-properties-"))
atexit.register(shutil.rmtree, SPOT, True)
(SPOT / "afile").write_text("")
BAD_PATHS = [str(SPOT / "afile"), str(SPOT / "afile" / "sub"), str(SPOT / ("x" * 300))]
PATHS = BAD_PATHS + [str(SPOT / "fine" / "configs"), "outputs/configs"]
path_overrides = st.tuples(st.sampled_from(["output_dir", "install_dir", "table_dir"]),
                           st.sampled_from(PATHS))
# Counts far beyond the machine (workers=1000 once started 1000 processes) and batch sizes beyond
# any GPU's memory.
big_overrides = st.one_of(
    st.tuples(st.just("workers"), st.integers(2, 100000).map(str)),
    st.tuples(st.just("buckets"), st.lists(st.integers(1, 10**13), min_size=1, max_size=3).map(
        lambda v: "[" + ",".join(map(str, v)) + "]")),
)

values = st.one_of(
    st.integers(-4, 70000).map(str),
    st.sampled_from(WORDS),
    st.lists(st.integers(-2, 5000), max_size=4).map(lambda v: "[" + ",".join(map(str, v)) + "]"),
    st.text(alphabet=string.ascii_letters + string.digits + "-_.,[]{}:'\" $=", max_size=8),
)
overrides = st.lists(st.one_of(st.tuples(st.sampled_from(KEYS), values), path_overrides,
                                big_overrides), max_size=4).map(
    lambda pairs: [f"{k}={v}" for k, v in pairs])


def plan_or_refusal(args):
    """The plan, or the one-line message the command line would print."""
    try:
        return build_plan(compose(*args), probe_gpu=False), None
    except UserError as exc:
        return None, str(exc)
    except (HydraException, OmegaConfBaseException, ValueError, TypeError) as exc:
        line = composition_error(exc, args)
        if line is None:
            raise
        return None, line


@settings(max_examples=int(os.environ.get("AUTOTUNE_PROPERTY_EXAMPLES", "200")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from(SHAPES), device=st.sampled_from(DEVICES), extra=overrides)
def test_any_overrides_give_a_valid_plan_or_one_clear_line(shape, device, extra):
    plan, refusal = plan_or_refusal([f"shape={shape}", f"device={device}", *extra])
    if plan is None:
        assert refusal and refusal.strip() and "\n" not in refusal
        return
    s = plan.shape
    assert s.E >= 1 and s.N >= 1 and s.K >= 1 and 1 <= s.topk <= s.E
    assert plan.buckets == sorted(set(plan.buckets)) and plan.buckets[0] >= 1
    assert plan.cfg.trials >= 1 and plan.cfg.workers >= 1
    assert plan.space.size() <= plan.space.raw_size()
    assert plan.study_name(plan.buckets[0]).startswith(device_token(plan.device.name) + "/")
    assert plan.output_path.name.startswith(f"E={s.E},N={s.N},device_name=")
    assert "output" in plan.describe()
    # What it will write can be written: no bad path got through the plan.
    written = [plan.cfg.output_dir] + ([plan.cfg.install_dir] if plan.cfg.install_dir else []) \
        + ([plan.cfg.table_dir] if plan.cfg.sampler.name == "grid" else [])
    assert not [w for w in written if w in BAD_PATHS]
    assert max(plan.buckets) <= MAX_BATCH_SIZE
    if plan.benchmark_kind != "gpu":
        assert plan.cfg.workers <= len(os.sched_getaffinity(0))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(shape=st.sampled_from(SHAPES), device=st.sampled_from(DEVICES), extra=overrides)
def test_the_command_line_says_the_same_in_one_line(tmp_path, shape, device, extra):
    plan, refusal = plan_or_refusal([f"shape={shape}", f"device={device}", *extra])
    result = run_cli(f"shape={shape}", f"device={device}", *extra, "dry_run=true", cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    if plan is not None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [f"autotune: error: {refusal}"]
