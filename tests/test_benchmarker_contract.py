"""The Benchmarker contract (autotune/bench/protocol.py), the same checks on every benchmarker:
replay and the CPU interpreter here, the GPU one where there is a GPU (marked gpu).

What the study relies on: a config that cannot run is a Measurement with a reason, never an
exception; measuring again times again; prepare is only a hint; verify says True, False or None
(cannot check); the identity names the benchmarker and goes into study names as JSON.
"""

import json

import pytest

from autotune.bench import open_benchmarker
from autotune.bench.protocol import Benchmarker, Measurement
from autotune.plan import build_plan
from autotune.problem import vllm_rules
from tests.conftest import compose, replay_args

M = 16


def _replay(tmp_path):
    return build_plan(compose(*replay_args(tmp_path)), probe_gpu=False)


def _interpreter(tmp_path):
    return build_plan(compose("shape=tiny", "device=cpu", f"output_dir={tmp_path}",
                              f"storage=sqlite:///{tmp_path / 's.db'}"), probe_gpu=False)


def _gpu(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return build_plan(compose("shape=qwen35_tp1", "device=auto", f"output_dir={tmp_path}",
                              f"storage=sqlite:///{tmp_path / 's.db'}"))


@pytest.fixture(scope="module", ids=["replay", "interpreter", "gpu"],
                params=[_replay, _interpreter, pytest.param(_gpu, marks=pytest.mark.gpu)])
def bench_and_plan(request, tmp_path_factory):
    plan = request.param(tmp_path_factory.mktemp("bench"))  # one benchmarker for all the checks
    bench = open_benchmarker(plan)
    yield bench, plan
    bench.close()


def _default(plan) -> dict:
    s = plan.shape
    return vllm_rules.default_config(M, s.E, s.dtype, s.block_shape)


def test_it_is_a_benchmarker_with_a_json_identity_naming_its_kind(bench_and_plan):
    bench, plan = bench_and_plan
    assert isinstance(bench, Benchmarker)
    identity = bench.identity()
    assert identity["kind"] == plan.benchmark_kind
    assert json.loads(json.dumps(identity, sort_keys=True)) == identity


def test_a_config_that_runs_is_timed_and_timed_again_when_asked_again(bench_and_plan):
    bench, plan = bench_and_plan
    config = _default(plan)
    bench.prepare([config], M)  # a hint: nothing to check but that it is accepted
    first, second = bench.measure(config, M), bench.measure(config, M)
    for m in (first, second):
        assert isinstance(m, Measurement) and m.ok and m.us > 0 and m.infeasible is None
    assert bench.verify(config, M) in (True, None)


def test_a_config_that_cannot_run_is_a_measurement_with_a_reason(bench_and_plan):
    bench, plan = bench_and_plan
    # Far outside any space and any GPU's shared memory: compiles to nothing, or is not recorded.
    impossible = {"BLOCK_SIZE_M": 256, "BLOCK_SIZE_N": 256, "BLOCK_SIZE_K": 256,
                  "GROUP_SIZE_M": 1, "num_warps": 1, "num_stages": 7}
    m = bench.measure(impossible, M)
    assert isinstance(m, Measurement)
    if not m.ok:
        assert m.us is None and m.infeasible
