"""The GPU benchmarker on a real GPU: timing, correctness gate, compile-ahead, fault containment.

Run on a GPU machine with `TRITON_INTERPRET=0 python -m pytest -m gpu tests/test_gpu_bench.py`.
"""

import os

import pytest
import torch

from autotune.bench import open_benchmarker
from autotune.bench.gpu import open_gpu_benchmarker
from autotune.plan import build_plan
from tests.conftest import compose
from tests.gpu_faults import faulting_timer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                       reason="needs a CUDA GPU with compiled Triton (TRITON_INTERPRET=0)"),
]

CONFIG = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
          "num_warps": 4, "num_stages": 3}


def gpu_plan(*overrides, shape="qwen35_tp1"):
    return build_plan(compose(f"shape={shape}", "device=auto", "benchmark.replays=10",
                              *overrides))


def test_times_verifies_and_reports_the_method():
    bench = open_benchmarker(gpu_plan())
    try:
        bench.prepare([CONFIG], 16)
        first, second = bench.measure(CONFIG, 16), bench.measure(CONFIG, 16)
        assert first.ok and second.ok
        assert abs(first.us - second.us) / first.us < 0.05
        assert len(first.samples) == 10 and first.spread < 0.1
        assert first.method["l2"] == "layers" and first.method["layers"] >= 4
        assert first.method["swap_ab"] is True  # fp8, BLOCK_SIZE_M 16 < 64, BLOCK_SIZE_N 64, SM90
        assert bench.verify(CONFIG, 16) is True
        assert bench.environment["device"] == torch.cuda.get_device_name(0)
        stats = bench.stats()
        assert stats.compiled == 1 and stats.worker_restarts == 0
    finally:
        bench.close()


def test_cold_l2_rotates_weight_copies():
    bench = open_benchmarker(gpu_plan("benchmark.l2=cold"))
    try:
        m = bench.measure(CONFIG, 1)
        assert m.ok and m.method["weight_copies"] >= 2
    finally:
        bench.close()


def test_bf16_is_never_timed_swapped():
    bench = open_benchmarker(gpu_plan(shape="qwen3_30b_a3b_tp1"))
    try:
        m = bench.measure(CONFIG, 1)
        assert m.ok and m.method["swap_ab"] is False
    finally:
        bench.close()


def test_hot_l2_reuses_one_set_of_weights():
    bench = open_benchmarker(gpu_plan("benchmark.l2=hot"))
    try:
        m = bench.measure(CONFIG, 1)
        assert m.ok and m.method["weight_copies"] == 1 and m.method["calls_per_graph"] == 10
    finally:
        bench.close()


def test_a_faulting_config_is_infeasible_and_the_next_one_is_measured():
    bench = open_gpu_benchmarker(gpu_plan(), timer=faulting_timer({"BLOCK_SIZE_M": 32}))
    try:
        bad = bench.measure({**CONFIG, "BLOCK_SIZE_M": 32}, 16)
        assert not bad.ok and bad.infeasible.startswith("fault")
        assert bench.measure(CONFIG, 16).ok
        assert bench.stats().worker_restarts == 1
    finally:
        bench.close()


def test_out_of_shared_memory_is_infeasible():
    plan = gpu_plan("search_space.constraints=[]")
    bench = open_benchmarker(plan)
    try:
        huge = {"BLOCK_SIZE_M": 256, "BLOCK_SIZE_N": 256, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
                "num_warps": 8, "num_stages": 5}
        m = bench.measure(huge, 16)
        assert not m.ok and m.infeasible
        assert bench.measure(CONFIG, 16).ok
    finally:
        bench.close()


OTHER = {**CONFIG, "BLOCK_SIZE_N": 128, "num_stages": 4}


def test_rounds_in_the_worker_time_as_one_measurement_a_round_does():
    bench = open_benchmarker(gpu_plan("benchmark.rounds_in_worker=true"))
    try:
        configs = [CONFIG, OTHER]
        bench.prepare(configs, 16)
        in_worker = bench.measure_rounds(configs, 16, 3)
        bench.rounds_in_worker = False
        one_by_one = bench.measure_rounds(configs, 16, 3)
        for a, b in zip(in_worker, one_by_one):
            assert len(a) == len(b) == 3 and all(m.ok for m in a + b)
            median = sorted(m.us for m in a)[1] / sorted(m.us for m in b)[1]
            assert abs(median - 1) < 0.03
        assert bench.stats().worker_restarts == 0
    finally:
        bench.close()


def test_a_fault_in_rounds_is_found_one_config_at_a_time():
    plan = gpu_plan("benchmark.rounds_in_worker=true")
    bench = open_gpu_benchmarker(plan, timer=faulting_timer({"BLOCK_SIZE_M": 32}))
    try:
        timings = bench.measure_rounds([CONFIG, {**CONFIG, "BLOCK_SIZE_M": 32}, OTHER], 16, 2)
        assert [len(t) for t in timings] == [2, 1, 2]
        assert all(m.ok for m in timings[0] + timings[2])
        assert "fault" in timings[1][0].infeasible
    finally:
        bench.close()


def test_a_measurement_after_its_look_times_as_one_without():
    bench = open_benchmarker(gpu_plan())
    try:
        bench.prepare([CONFIG, OTHER], 256)
        for config in (CONFIG, OTHER):
            plain = bench.measure(config, 256)
            with bench.visit(config, 256):
                look = bench.screen(config, 256)
                after = bench.measure(config, 256)
            assert look.ok and len(look.samples) == 3 and after.ok and len(after.samples) == 10
            assert abs(after.us / plain.us - 1) < 0.03
        stats = bench.stats()
        assert (stats.looks, stats.measurements) == (2, 4)
    finally:
        bench.close()
