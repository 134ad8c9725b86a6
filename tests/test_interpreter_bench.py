"""The CPU benchmarker: the real kernel under the Triton interpreter, in the measuring worker."""

import json

from autotune.bench import open_benchmarker
from autotune.files.check import check_file
from autotune.plan import build_plan
from tests.conftest import compose, run_cli

CONFIG = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 32, "GROUP_SIZE_M": 1,
          "num_warps": 4, "num_stages": 2}


def test_measures_and_verifies_the_real_kernel_in_a_worker_process():
    plan = build_plan(compose("shape=tiny", "device=cpu"))
    bench = open_benchmarker(plan)
    try:
        m = bench.measure(CONFIG, 4)
        assert m.ok and m.us > 0 and len(m.samples) == 3
        assert bench.verify(CONFIG, 4) is True
        # A config the kernel refuses is an infeasible result with its reason, not a crash.
        bad = bench.measure({**CONFIG, "BLOCK_SIZE_K": 24}, 4)
        assert not bad.ok and "BLOCK_SIZE_K" in bad.infeasible
        assert bench.measure(CONFIG, 4).ok  # the worker lives on
        assert bench.stats().worker_restarts == 0
    finally:
        bench.close()


def test_a_first_look_is_one_call_and_counted_apart_from_measurements():
    plan = build_plan(compose("shape=tiny", "device=cpu"))
    bench = open_benchmarker(plan)
    try:
        with bench.visit(CONFIG, 4):
            look = bench.screen(CONFIG, 4)
            full = bench.measure(CONFIG, 4)
        assert look.ok and len(look.samples) == 1 and full.ok and len(full.samples) == 3
        stats = bench.stats()
        assert (stats.looks, stats.measurements) == (1, 1)
        bad = bench.screen({**CONFIG, "BLOCK_SIZE_K": 24}, 4)
        assert not bad.ok and "BLOCK_SIZE_K" in bad.infeasible
    finally:
        bench.close()


def test_a_screened_run_prunes_with_first_looks_and_writes_its_file(tmp_path):
    db = tmp_path / "s.db"
    result = run_cli("shape=tiny", "device=cpu", "trials=6", "patience=null", "buckets=[4]",
                     "pruner=screen", "pruner.margin=0.01", f"storage=sqlite:///{db}",
                     f"output_dir={tmp_path}", "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "E=8,N=64,device_name=cpu.json").exists()
    import optuna

    study = optuna.load_study(study_name=optuna.get_all_study_names(f"sqlite:///{db}")[0],
                              storage=f"sqlite:///{db}")
    looked = [t for t in study.trials if "first_look_us" in t.user_attrs]
    assert looked, "every new config gets a first look"
    # a 1% margin on single-call looks of the interpreter prunes some: they keep their look
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all(t.intermediate_values for t in pruned)
    assert "first looks" in result.stdout


def test_cpu_smoke_run_writes_a_file_valid_but_for_its_device(tmp_path):
    result = run_cli("shape=tiny", "device=cpu", "trials=2", "buckets=[1,4]",
                     f"storage=sqlite:///{tmp_path / 's.db'}", f"output_dir={tmp_path}",
                     "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "E=8,N=64,device_name=cpu.json"
    # Everything vLLM checks passes, but the device: no GPU is named cpu (autotune.check says so).
    findings = [f.message for f in check_file(path)]
    assert len(findings) == 1 and findings[0].startswith("device_name=cpu is a CPU smoke run's file")
    assert list(json.loads(path.read_text())) == ["triton_version", "1", "4"]


def test_a_run_re_timing_alongside_the_search_writes_the_same_kind_of_file(tmp_path):
    result = run_cli("shape=tiny", "device=cpu", "trials=2", "buckets=[1,4]",
                     "retime_alongside=true", f"storage=sqlite:///{tmp_path / 's.db'}",
                     f"output_dir={tmp_path}", "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "re-timing alongside" in result.stdout  # bucket 1 was re-timed in the background
    # both entries re-timed and checked, whichever thread settled them
    assert sum("(re-timed;" in line for line in result.stdout.splitlines()) == 2
    assert list(json.loads((tmp_path / "E=8,N=64,device_name=cpu.json").read_text())) == [
        "triton_version", "1", "4"]


def test_layer_stack_inputs_give_each_layer_its_own_weights_and_routing():
    from autotune.bench.timing import TimerSpec, _Problem

    spec = TimerSpec(E=16, N=32, K=64, topk=2, dtype="fp16", block_shape=None, l2="layers")
    layers = _Problem(spec, "cpu").inputs(M=8, copies=4)
    assert len(layers) == 4
    for a in layers:
        for b in layers:
            if a is not b:
                assert a.weights.w1.data_ptr() != b.weights.w1.data_ptr()  # other memory
                assert not (a.topk_ids == b.topk_ids).all()  # other routing
                assert not (a.x == b.x).all()  # other hidden states


def test_weights_are_drawn_once_and_four_batch_sizes_inputs_are_kept():
    import torch

    from autotune.bench.timing import TimerSpec, _Problem

    spec = TimerSpec(E=16, N=32, K=64, topk=2, dtype="fp16", block_shape=None, l2="layers")
    problem = _Problem(spec, "cpu")
    at8 = problem.inputs(M=8, copies=4)
    at2 = problem.inputs(M=2, copies=4)
    assert [a.weights for a in at8] == [a.weights for a in at2]  # the same tensors, not copies
    assert problem.inputs(M=8, copies=4) is at8  # the search and the re-timing alternate
    for M in (4, 16):  # two loops' and the re-timing's batch sizes alternate
        problem.inputs(M=M, copies=4)
    assert problem.inputs(M=8, copies=4) is at8
    problem.inputs(M=64, copies=4)
    again = problem.inputs(M=2, copies=4)  # M=2 was the least recent of five: drawn again,
    assert again is not at2  # from the same seeds
    assert all(torch.equal(a.x, b.x) and torch.equal(a.topk_ids, b.topk_ids)
               for a, b in zip(again, at2))


def test_cold_copies_share_the_routing_and_only_rotate_the_weights():
    from autotune.bench.timing import TimerSpec, _Problem

    spec = TimerSpec(E=16, N=32, K=64, topk=2, dtype="fp16", block_shape=None, l2="cold")
    first, second = _Problem(spec, "cpu").inputs(M=8, copies=2)
    assert first.weights.w1.data_ptr() != second.weights.w1.data_ptr()
    assert first.topk_ids is second.topk_ids and first.x is second.x


def test_interleaved_rounds_in_one_request_as_retime_weighs_them():
    from autotune.bench.protocol import Rounds
    from autotune.consolidate.retime import retime

    plan = build_plan(compose("shape=tiny", "device=cpu"))
    bench = open_benchmarker(plan)
    other = {**CONFIG, "BLOCK_SIZE_N": 64}
    bad = {**CONFIG, "BLOCK_SIZE_K": 24}
    try:
        assert isinstance(bench, Rounds)
        timings = bench.measure_rounds([CONFIG, bad, other], 4, 3)
        assert [len(t) for t in timings] == [3, 1, 3]
        assert all(m.ok and m.us > 0 for m in timings[0] + timings[2])
        assert not timings[1][0].ok and "BLOCK_SIZE_K" in timings[1][0].infeasible
        assert bench.stats().measurements == 6 and bench.stats().infeasible == 1
        first, failed, _ = retime(bench, [CONFIG, bad, other], 4, 2)
        assert len(first["samples"]) == 2 and first["us"] > 0
        assert failed["us"] is None and "BLOCK_SIZE_K" in failed["reason"]
        assert bench.stats().worker_restarts == 0
    finally:
        bench.close()
