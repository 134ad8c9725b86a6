"""Every preset composes into a valid plan; the seed shapes resolve to the file names vLLM reads."""

from pathlib import Path

import pytest

from autotune.config import config_root
from autotune.errors import UserError
from autotune.plan import build_plan
from tests.conftest import DATA, GRIDS, compose, run_cli

SHAPES = sorted(p.stem for p in (config_root() / "shape").glob("*.yaml"))
# shape=hf reads a model's config.json (tests/test_hf_config.py): compose it with one
PRESET_ARGS = {"hf": [f"shape.model={DATA / 'hf_configs' / 'Qwen3-30B-A3B'}"]}
DEVICES = sorted(p.stem for p in (config_root() / "device").glob("*.yaml") if p.stem != "auto")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("device", DEVICES)
def test_every_preset_composes_into_a_plan(shape, device):
    cfg = compose(f"shape={shape}", f"device={device}", "dry_run=true", *PRESET_ARGS.get(shape, []))
    capability = cfg.device.compute_capability
    if cfg.shape.dtype == "fp8_w8a8" and capability and tuple(capability) < (8, 9):
        with pytest.raises(UserError, match="Triton's fp8 needs 8.9 or newer"):
            build_plan(cfg, probe_gpu=False)
        return
    plan = build_plan(cfg, probe_gpu=False)
    assert plan.space.size() > 0
    assert plan.buckets == sorted(plan.buckets)
    assert len({plan.study_name(m) for m in plan.buckets}) == len(plan.buckets)


@pytest.mark.parametrize("shape, E, N", [
    ("qwen35_tp1", 256, 512), ("minimax_m25_tp4", 256, 384), ("minimax_m25_ep4", 64, 1536),
    ("deepseek_v3_tp8", 256, 256), ("qwen3_30b_a3b_tp1", 128, 768), ("mixtral_8x7b_tp2", 8, 7168),
])
def test_presets_resolve_E_and_N(shape, E, N):
    plan = build_plan(compose(f"shape={shape}", "device=h100"), probe_gpu=False)
    assert (plan.shape.E, plan.shape.N) == (E, N)


def test_parallelism_and_dtype_overrides_apply():
    plan = build_plan(compose("shape=minimax_m25_tp4", "device=h100", "shape.tp=1", "shape.ep=4"),
                      probe_gpu=False)
    assert (plan.shape.E, plan.shape.N) == (64, 1536)
    plan = build_plan(compose("shape=qwen3_30b_a3b_tp1", "device=h100", "shape.dtype=fp16"),
                      probe_gpu=False)
    assert plan.output_path.name == "E=128,N=768,device_name=NVIDIA_H100_80GB_HBM3.json"


def test_runs_take_a_first_look_but_an_exhaustive_pass_times_every_config_fully():
    assert compose("shape=tiny", "device=cpu").pruner.name == "screen"
    assert compose("shape=tiny", "device=cpu", "sampler=grid").pruner.name == "none"
    assert compose("shape=tiny", "device=cpu", "sampler=grid", "pruner=screen").pruner.name == "screen"
    assert compose("shape=tiny", "device=cpu", "pruner=none").pruner.name == "none"


def test_vllm_space_with_block_quantization_is_vllms_960_configs():
    # The H200 table's space: BLOCK_SIZE_N and BLOCK_SIZE_K dividing 128, before shared memory.
    plan = build_plan(compose("shape=qwen35_tp1", "device=h200",
                              "search_space.constraints=[block_quant]"), probe_gpu=False)
    assert plan.space.raw_size() == 1920
    assert plan.space.size() == 960


def test_study_names_separate_everything_that_changes_the_answer():
    base = build_plan(compose("shape=qwen35_tp1", "device=h100"), probe_gpu=False)
    others = [
        build_plan(compose("shape=qwen35_tp1", "device=h200"), probe_gpu=False),
        build_plan(compose("shape=qwen35_tp1", "device=h100", "benchmark.l2=cold"),
                   probe_gpu=False),
        build_plan(compose("shape=qwen35_tp1", "device=h100", "benchmark.min_layers=16"),
                   probe_gpu=False),
        build_plan(compose("shape=qwen35_tp1", "device=h100", "search_space=small"),
                   probe_gpu=False),
        build_plan(compose("shape=minimax_m25_tp4", "device=h100"), probe_gpu=False),
    ]
    assert len({p.study_name(16) for p in [base, *others]}) == 6
    assert base.study_name(16) != base.study_name(32)
    # Sampler settings do not change the answer: a rerun with another seed resumes the study.
    seeded = build_plan(compose("shape=qwen35_tp1", "device=h100", "sampler.seed=3"),
                        probe_gpu=False)
    assert seeded.study_name(16) == base.study_name(16)


@pytest.mark.parametrize("shape, expected", [
    ("qwen35_tp1", "E=256,N=512,device_name=NVIDIA_RTX_PRO_6000_Blackwell_Server_Edition,"
                   "dtype=fp8_w8a8,block_shape=[128,128].json"),
    ("minimax_m25_tp4", "E=256,N=384,device_name=NVIDIA_RTX_PRO_6000_Blackwell_Server_Edition,"
                        "dtype=fp8_w8a8,block_shape=[128,128].json"),
    ("minimax_m25_ep4", "E=64,N=1536,device_name=NVIDIA_RTX_PRO_6000_Blackwell_Server_Edition,"
                        "dtype=fp8_w8a8,block_shape=[128,128].json"),
])
def test_dry_run_prints_the_exact_file_name_from_any_directory(tmp_path, shape, expected):
    result = run_cli(f"shape={shape}", "device=rtxpro6000", "dry_run=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    assert "buckets    1 2 4 8 16 24 32 48 64 96 128 256 512 1024 1536 2048 3072 4096" in result.stdout


def test_dry_run_of_a_replay_plan_lists_the_recorded_buckets(tmp_path):
    result = run_cli("shape=qwen35_tp1", "device=h200", "benchmark=replay",
                     f"benchmark.tables=[{GRIDS}]", "dry_run=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "buckets    1 16 64 256 4096" in result.stdout


def test_multirun_sweeps_tp_and_ep_variants(tmp_path):
    result = run_cli("-m", "shape=minimax_m25_tp4,minimax_m25_ep4", "device=h100", "dry_run=true",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "E=256,N=384,device_name=NVIDIA_H100_80GB_HBM3" in result.stdout
    assert "E=64,N=1536,device_name=NVIDIA_H100_80GB_HBM3" in result.stdout
    assert Path(tmp_path, "outputs", "multirun").is_dir()
