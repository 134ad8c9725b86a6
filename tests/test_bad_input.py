"""Bad input ends in a clear message on stderr and a non-zero exit, never a traceback."""

import hashlib
import sqlite3

import pytest

from autotune.config import DeviceConfig
from autotune.errors import UserError
from autotune.problem.device import DeviceSpec, resolve_device
from tests.conftest import compose, replay_args, run_cli


def refused(result, *words):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    for w in words:
        assert w in result.stderr, result.stderr
    return result


@pytest.mark.parametrize("args, words", [
    (["device=h100"], ["You must specify 'shape'", "qwen35_tp1", "minimax_m25_ep4"]),
    (["shape=qwen35_tp1"], ["You must specify 'device'", "rtxpro6000", "h200"]),
    (["shape=llama_tp1", "device=h100"], ["shape/llama_tp1", "qwen35_tp1"]),
    (["shape=qwen35_tp1", "device=mi300"], ["device/mi300", "h100"]),
    (["shape=qwen35_tp1", "device=a100"],
     ["shape.dtype=fp8_w8a8 on NVIDIA A100-SXM4-80GB (compute capability 8.0)", "bf16"]),
    (["shape=minimax_m25_tp4", "device=h100", "shape.tp=5"],
     ["shape.tp=5 does not divide intermediate_size=1536"]),
    (["shape=minimax_m25_tp4", "device=h100", "shape.tp=32"],
     ["N=48", "block_n=128"]),
    (["shape=qwen35_tp1", "device=h100", "trails=10"], ["trails"]),
    (["shape=qwen35_tp1", "device=h100", "shape.tp=two"], ["shape.tp", "two"]),
    (["shape=qwen35_tp1", "device=h100", "shape.experts_total=3"], ["experts_total"]),
    (["shape=qwen35_tp1", "device=h100", "buckets=[0,16]"], ["buckets [0]"]),
    (["shape=qwen35_tp1", "device=h100", "sampler.name=cmaes"], ["sampler.name=cmaes"]),
    (["shape=qwen35_tp1", "device=h100", "sampler.prior_source=vllm"],
     ["sampler.prior_source=vllm", "both, shipped, tables"]),
    (["shape=qwen35_tp1", "device=h100", "search_space=huge"], ["search_space/huge", "vllm"]),
    (["shape=qwen35_tp1", "device=h100", "sampler.prior_table_weight=-1"],
     ["sampler.prior_table_weight=-1.0", "0 or more"]),
    (["shape=qwen35_tp1", "device=h100", "benchmark.min_layers=0"],
     ["benchmark.min_layers=0: must be at least 1"]),
    (["shape=qwen35_tp1", "device=h100", "+trails=16"],
     ["+trails: there is no setting trails (did you mean trials?)"]),
    (["shape=qwen35_tp1", "device=h100", "+shape.expertz=3"],
     ["+shape.expertz: there is no setting shape.expertz (did you mean shape.experts?)"]),
    (["shape=qwen35_tp1", "device=h100", "buckets=[1,1000000000000]"],
     ["buckets [1000000000000]: batch sizes are at most 65536"]),
    (["shape=qwen35_tp1", "device=h100", "sampler.warm_start_file=/no/such/file.json"],
     ["sampler.warm_start_file=/no/such/file.json does not exist"]),
    (["shape=qwen35_tp1", "device=h100", "sampler.prior_files=[/no/such/folder]"],
     ["sampler.prior_files: nothing found at /no/such/folder"]),
    (["shape=qwen35_tp1", "device=h100", "compare_with=/no/such/file.json"],
     ["compare_with=/no/such/file.json: no such file or folder"]),
    (["shape=qwen35_tp1", "device=h100", "storage=sqlite:/x.db"],
     ["storage=sqlite:/x.db: an SQLite URL has three slashes", "sqlite:////tmp/studies.db"]),
    (["shape=qwen35_tp1", "device=h100", "storage=sqlite://x.db"], ["three slashes"]),
    (["shape=qwen35_tp1", "device=h100", "storage=postgres://me@db/tune"],
     ["write postgresql://me@db/tune"]),
    (["shape=qwen35_tp1", "device=h100", "storage=studies.db"],
     ["storage=studies.db: not a storage URL; use sqlite:///<file>.db"]),
])
def test_bad_configuration_is_refused_with_the_value_named(tmp_path, monkeypatch, args, words):
    # In process, as the command composes and plans (one subprocess per case cost seconds each);
    # the command's own handling of these errors is checked below.
    monkeypatch.chdir(tmp_path)
    line = refusal(*args, "dry_run=true")
    for w in words:
        assert w in line, line


def refusal(*args: str) -> str:
    """The one line `python -m autotune ARGS` ends with for a config it refuses."""
    from autotune.__main__ import composition_error
    from autotune.plan import build_plan

    try:
        cfg = compose(*args)
    except Exception as exc:  # noqa: BLE001 - what the command turns into one line, or a bug
        line = composition_error(exc, list(args))
        if line is None:
            raise
        return line
    with pytest.raises(UserError) as refused_:
        build_plan(cfg, probe_gpu=not cfg.dry_run)
    return str(refused_.value)


@pytest.mark.parametrize("args, words", [
    (["device=h100"], ["You must specify 'shape'", "qwen35_tp1"]),  # composing
    (["shape=qwen35_tp1", "device=h100", "sampler.name=cmaes"], ["sampler.name=cmaes"]),  # planning
])
def test_the_command_says_a_refusal_in_one_line_and_exits_2(tmp_path, args, words):
    result = refused(run_cli(*args, "dry_run=true", cwd=tmp_path), *words)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("autotune: error:")


def test_gpu_device_without_a_gpu_suggests_the_cpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    refused(run_cli("shape=tiny", "device=h100", cwd=tmp_path), "no CUDA GPU", "device=cpu")


def test_configured_gpu_must_be_the_one_present(monkeypatch):
    # The GPU is simulated here: CI has none. The check compares vLLM's device tokens.
    import autotune.problem.device as device

    monkeypatch.setattr(device, "present_gpu",
                        lambda: DeviceSpec(name="NVIDIA H200", kind="gpu"))
    with pytest.raises(UserError, match="device is NVIDIA H100 80GB HBM3 but the GPU present is "
                                        "NVIDIA H200"):
        resolve_device(DeviceConfig(name="NVIDIA H100 80GB HBM3"), need_gpu=True, probe=True)
    # An H200 NVL reads as NVIDIA_H200 too, as in vLLM's lookup.
    monkeypatch.setattr(device, "present_gpu",
                        lambda: DeviceSpec(name="NVIDIA H200 NVL", kind="gpu"))
    assert resolve_device(DeviceConfig(name="NVIDIA H200"), need_gpu=True, probe=True)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("content", [b"this is not a database" * 100, b"SQLite format 3\0" + b"x" * 200])
def test_corrupt_storage_is_refused_and_left_untouched(tmp_path, content):
    db = tmp_path / "studies.db"
    db.write_bytes(content)
    before = digest(db)
    refused(run_cli(*replay_args(tmp_path), cwd=tmp_path), str(db), "left untouched")
    assert digest(db) == before


def test_foreign_sqlite_database_is_refused_and_left_untouched(tmp_path):
    db = tmp_path / "studies.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE invoices (id INTEGER)")
    con.commit()
    con.close()
    before = digest(db)
    refused(run_cli(*replay_args(tmp_path), cwd=tmp_path), "something else")
    assert digest(db) == before


def test_replay_table_for_another_shape_is_refused(tmp_path):
    result = run_cli("shape=minimax_m25_tp4", "device=h200", "benchmark=replay",
                     f"benchmark.tables=[{replay_args(tmp_path)[3].split('[')[1][:-1]}]",
                     "dry_run=true", cwd=tmp_path)
    refused(result, "no recorded table is for E=256 N=384")


def test_malformed_replay_table_is_refused(tmp_path):
    bad = tmp_path / "table.json"
    bad.write_text('{"format": "moe-grid-table/1", "M": 16}')
    refused(run_cli("shape=qwen35_tp1", "device=h200", "benchmark=replay",
                    f"benchmark.tables=[{bad}]", "dry_run=true", cwd=tmp_path),
            "malformed")


def test_bucket_without_a_recorded_table_is_refused(tmp_path):
    refused(run_cli(*replay_args(tmp_path, "buckets=[1,2]"), "dry_run=true", cwd=tmp_path),
            "buckets [2] have no recorded table")


@pytest.mark.parametrize("setting", ["sampler.warm_start_file", "sampler.prior_files"])
def test_a_named_input_file_that_does_not_parse_is_refused_before_measuring(tmp_path, setting):
    bad = tmp_path / "E=256,N=512,device_name=NVIDIA_H100_80GB_HBM3.json"
    bad.write_text("{not json")
    value = f"['{bad}']" if setting == "sampler.prior_files" else f"'{bad}'"  # = quoted for Hydra
    result = refused(run_cli(*replay_args(tmp_path), f"{setting}={value}", cwd=tmp_path),
                     f"vLLM config file {bad} is not readable")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "studies.db").exists()  # nothing was measured


def test_a_relative_storage_path_is_said_as_the_file_it_opens(tmp_path):
    result = run_cli("shape=tiny", "device=cpu", "storage=sqlite:///tmp/x.db", "dry_run=true",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"storage    sqlite:///tmp/x.db (the file {tmp_path / 'tmp' / 'x.db'})" in result.stdout


def test_a_failing_multirun_job_does_not_stop_the_others(tmp_path):
    result = run_cli("-m", "shape=tiny,qwen35_tp1", "device=h200", "benchmark=replay",
                     f"benchmark.tables=[{replay_args(tmp_path)[3].split('[')[1][:-1]}]",
                     "dry_run=true", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "autotune: error: no recorded table is for E=8 N=64" in result.stderr  # job 0
    assert "output     outputs/configs/E=256,N=512,device_name=NVIDIA_H200" in result.stdout  # 1
    assert result.stderr.strip().endswith("a job of the multirun failed (exit code 2); the other "
                                          "jobs ran")


def test_a_real_shape_on_the_cpu_is_warned_about_and_tiny_is_not(tmp_path):
    real = run_cli("shape=qwen35_tp1", "device=cpu", "dry_run=true", cwd=tmp_path)
    assert real.returncode == 0, real.stderr
    assert ("warning    Qwen3.5-35B-A3B-FP8 on device=cpu runs in Triton's interpreter at one to "
            "three minutes per measurement, and this run makes about 22: expect 22 minutes or more "
            "(shape=tiny device=cpu is the quick smoke test)") in real.stdout
    tiny = run_cli("shape=tiny", "device=cpu", "dry_run=true", cwd=tmp_path)
    assert tiny.returncode == 0 and "warning" not in tiny.stdout
