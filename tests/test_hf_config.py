"""shape=hf reads a model's MoE layer from its config.json as vLLM does, and names the file vLLM
looks up; what it cannot tune is refused in one line."""

import json
import shutil

import pytest
from omegaconf import OmegaConf

from autotune.config import ShapeConfig, config_root
from autotune.errors import UserError
from autotune.plan import build_plan
from autotune.problem.hf_config import read_shape_config
from tests.conftest import DATA, compose, run_cli

HF = DATA / "hf_configs"  # published config.json files, written by hand (README.md there)
H200 = "device_name=NVIDIA_H200"
FP8_BLOCK = "dtype=fp8_w8a8,block_shape=[128,128]"


def plan(model, *overrides):
    return build_plan(compose("shape=hf", f"shape.model={HF / model}", "device=h200", *overrides),
                      probe_gpu=False)


def file_name(E, N, suffix=""):
    return f"E={E},N={N},{H200}{',' + suffix if suffix else ''}.json"


# model, tp, ep -> the file vLLM 0.33 looks up on an H200 (vLLM ships most of these names).
DONE_WHEN = [
    *[("Qwen3-30B-A3B", tp, 1, file_name(128, 768 // tp)) for tp in (1, 2, 4, 8)],
    *[("Qwen3-30B-A3B", 1, ep, file_name(128 // ep, 768)) for ep in (2, 4, 8)],
    ("Qwen3-30B-A3B-FP8", 1, 1, file_name(128, 768, FP8_BLOCK)),
    ("Qwen3-30B-A3B-FP8", 2, 1, file_name(128, 384, FP8_BLOCK)),
    # A shard of 1.5 blocks: vLLM refines the scales to [64,64] (gcd of 128, 192 and 2048).
    ("Qwen3-30B-A3B-FP8", 4, 1, file_name(128, 192, "dtype=fp8_w8a8,block_shape=[64,64]")),
    *[("Qwen3-30B-A3B-FP8", 1, ep, file_name(128 // ep, 768, FP8_BLOCK)) for ep in (2, 4, 8)],
    *[("DeepSeek-V3", tp, 1, file_name(256, 2048 // tp, FP8_BLOCK)) for tp in (1, 2, 4, 8)],
    ("DeepSeek-V3", 1, 8, file_name(32, 2048, FP8_BLOCK)),
    *[("Mixtral-8x7B-v0.1", tp, 1, file_name(8, 14336 // tp)) for tp in (1, 2, 4, 8)],
    *[("Llama-4-Scout-17B-16E", tp, 1, file_name(16, 8192 // tp)) for tp in (1, 2, 4, 8)],
    *[("Qwen3-Next-80B-A3B-Instruct", tp, 1, file_name(512, 512 // tp)) for tp in (1, 2, 4, 8)],
    *[("MiniMax-M2", tp, 1, file_name(256, 1536 // tp, FP8_BLOCK)) for tp in (1, 2, 4)],
    ("MiniMax-M2", 8, 1, file_name(256, 192, "dtype=fp8_w8a8,block_shape=[64,64]")),
    *[("MiniMax-M2", 1, ep, file_name(256 // ep, 1536, FP8_BLOCK)) for ep in (4, 8)],
]


@pytest.mark.parametrize("model, tp, ep, expected", DONE_WHEN)
def test_the_plan_names_the_file_vllm_looks_up(model, tp, ep, expected):
    p = plan(model, f"shape.tp={tp}", f"shape.ep={ep}")
    assert p.output_path.name == expected


def test_a_shard_refined_to_32_blocks_needs_a_space_with_block_size_k_32():
    # Qwen3-30B-A3B-FP8 at TP8: N=96, vLLM runs [32,32] blocks; the vllm grid's smallest
    # BLOCK_SIZE_K is 64, which the kernel would run as 32, so the space holds nothing as written.
    with pytest.raises(UserError, match=r"no config left .*block=\[32,32\]"):
        plan("Qwen3-30B-A3B-FP8", "shape.tp=8")
    p = plan("Qwen3-30B-A3B-FP8", "shape.tp=8", "search_space.params.BLOCK_SIZE_K=[32,64,128,256]")
    assert p.output_path.name == file_name(128, 96, "dtype=fp8_w8a8,block_shape=[32,32]")


PRESET_MODELS = {  # each hand-written preset, and the model whose published config it is
    "qwen35_tp1": "Qwen3.5-35B-A3B-FP8",
    "minimax_m25_tp4": "MiniMax-M2.5",
    "minimax_m25_ep4": "MiniMax-M2.5",
    "deepseek_v3_tp8": "DeepSeek-V3",
    "qwen3_30b_a3b_tp1": "Qwen3-30B-A3B",
    "mixtral_8x7b_tp2": "Mixtral-8x7B-v0.1",
}


def test_every_model_preset_is_checked_against_its_config_json():
    presets = {p.stem for p in (config_root() / "shape").glob("*.yaml")} - {"hf", "tiny"}
    assert presets == set(PRESET_MODELS)


@pytest.mark.parametrize("preset, model", sorted(PRESET_MODELS.items()))
def test_preset_agrees_with_the_published_config(preset, model):
    typed = OmegaConf.load(config_root() / "shape" / f"{preset}.yaml")
    read, _ = read_shape_config(ShapeConfig(model=str(HF / model), source="hf", experts=None,
                                            hidden_size=None, intermediate_size=None, topk=None,
                                            dtype=None))
    for key in ("experts", "hidden_size", "intermediate_size", "topk", "dtype"):
        assert getattr(read, key) == typed[key], key
    assert read.block_shape == typed.block_shape


@pytest.mark.parametrize("model, E, topk, N, K, dtype, block", [
    ("Qwen1.5-MoE-A2.7B", 60, 4, 1408, 2048, "bf16", None),  # Qwen2-MoE
    ("DeepSeek-V2-Lite", 64, 6, 1408, 2048, "bf16", None),
    ("DeepSeek-R1", 256, 8, 2048, 7168, "fp8_w8a8", [128, 128]),
    ("GLM-4.5-Air", 128, 8, 1408, 4096, "bf16", None),
    ("Jamba-v0.1", 16, 2, 14336, 4096, "bf16", None),
    ("dbrx-instruct", 16, 4, 10752, 6144, "bf16", None),  # ffn_config.*, d_model
    ("Llama-4-Scout-17B-16E", 16, 1, 8192, 5120, "bf16", None),  # text_config; not _mlp
    ("Qwen3.5-35B-A3B-FP8", 256, 8, 512, 2048, "fp8_w8a8", [128, 128]),  # text_config
])
def test_each_family_is_read_under_its_own_field_names(model, E, topk, N, K, dtype, block):
    p = plan(model)  # TP1: N is the expert intermediate size, K the hidden size
    shape = p.shape
    assert (shape.E, shape.topk, shape.N, shape.K, shape.dtype) == (E, topk, N, K, dtype)
    assert shape.block_shape == (tuple(block) if block else None)
    assert p.model_config.path == HF / model / "config.json"


def test_dry_run_prints_the_fields_it_read_and_where(tmp_path):
    result = run_cli("shape=hf", f"shape.model={HF / 'DeepSeek-V3'}", "shape.tp=8", "device=h200",
                     "dry_run=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"model      {HF / 'DeepSeek-V3' / 'config.json'} (DeepseekV3ForCausalLM)" in out
    for line in ("config.json: n_routed_experts=256 -> experts",
                 "config.json: num_experts_per_tok=8 -> topk",
                 "config.json: moe_intermediate_size=2048 -> intermediate_size",
                 "config.json: hidden_size=7168 -> hidden_size",
                 "config.json: quantization_config.quant_method=fp8 weight_block_size=[128, 128] "
                 "-> fp8_w8a8 block [128,128]",
                 file_name(256, 256, FP8_BLOCK)):
        assert line in out, out


def test_multirun_sweeps_tp_variants_of_one_model_without_yaml(tmp_path):
    result = run_cli("-m", "shape=hf", f"shape.model={HF / 'Qwen3-Next-80B-A3B-Instruct'}",
                     "shape.tp=1,2,4,8", "device=h200", "dry_run=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for N in (512, 256, 128, 64):
        assert file_name(512, N) in result.stdout
    # The model's path names no job folder (it would nest them).
    jobs = [job for job in (tmp_path / "outputs" / "multirun").glob("*/*/*") if job.is_dir()]
    assert len(jobs) == 4 and not any("hf_configs" in job.name for job in jobs), jobs


def refused(result, *words):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("autotune: error:")]
    assert len(lines) == 1, result.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_input_is_refused_in_one_line_each(tmp_path):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    broken = tmp_path / "broken" / "config.json"
    broken.parent.mkdir()
    broken.write_text('{"architectures": ["Qwen3MoeForCausalLM"], "num_experts": 128,\n')
    cases = [
        ([f"shape.model={empty}"], [str(empty), "has no config.json"]),
        ([f"shape.model={HF / 'Qwen3-32B'}"], ["Qwen3ForCausalLM", "no routed experts",
                                               "dense model"]),
        ([f"shape.model={HF / 'gpt-oss-20b'}"], ["quant_method=mxfp4", "not the fused-MoE Triton "
                                                 "kernel"]),
        ([f"shape.model={HF / 'Qwen3-Next-80B-A3B-Instruct'}", "shape.tp=3"],
         ["shape.tp=3 does not divide intermediate_size=512"]),
        ([f"shape.model={broken}"], [str(broken), "is not valid JSON", "line 2"]),
    ]
    for args, words in cases:
        refused(run_cli("shape=hf", *args, "device=h200", "dry_run=true", cwd=tmp_path), *words)


def shape_config(model, **given):
    fields = dict(experts=None, hidden_size=None, intermediate_size=None, topk=None, dtype=None)
    return ShapeConfig(model=str(model), source="hf", **{**fields, **given})


def write_config(tmp_path, config, name="model"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


QWEN3 = json.loads((HF / "Qwen3-30B-A3B" / "config.json").read_text())


@pytest.mark.parametrize("quantization, words", [
    ({"quant_method": "awq", "bits": 4, "group_size": 128}, "quant_method=awq: int4 experts run "
                                                            "through Marlin"),
    ({"quant_method": "gptq", "bits": 4}, "quant_method=gptq"),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "quant_algo=NVFP4: FP4 experts"),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {
        "type": "int", "num_bits": 4, "strategy": "group"}}}}, "int 4-bit group: int4 experts"),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {
        "type": "float", "num_bits": 4, "strategy": "tensor_group"}}}}, "FP4 experts"),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {
        "type": "float", "num_bits": 8, "strategy": "channel"}}}}, "channel fp8 scales"),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {
        "type": "int", "num_bits": 8, "strategy": "channel"}}}}, "int8_w8a8"),
    ({"quant_method": "fp8", "activation_scheme": "static", "weight_block_size": [128, 128]},
     "dynamic activations only"),
    ({"quant_method": "fp8", "weight_block_size": [128]}, "two positive sizes"),
    ({"quant_method": "hqq"}, "quant_method=hqq is not a format this tuner reads"),
])
def test_formats_this_kernel_cannot_tune_are_refused_saying_why(tmp_path, quantization, words):
    folder = write_config(tmp_path, {**QWEN3, "quantization_config": quantization})
    with pytest.raises(UserError, match=words.replace("[", r"\[")):
        read_shape_config(shape_config(folder))


@pytest.mark.parametrize("quantization, dtype, block", [
    ({"quant_method": "fp8", "activation_scheme": "dynamic"}, "fp8_w8a8", None),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {
        "type": "float", "num_bits": 8, "strategy": "block", "block_structure": [128, 128]}}}},
     "fp8_w8a8", [128, 128]),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": {
        "type": "float", "num_bits": 8, "strategy": "tensor"}}}}, "fp8_w8a8", None),
    ({"quant_method": "modelopt", "quant_algo": "FP8"}, "fp8_w8a8", None),
])
def test_fp8_formats_give_the_kernel_dtype_and_block(tmp_path, quantization, dtype, block):
    folder = write_config(tmp_path, {**QWEN3, "quantization_config": quantization})
    read, _ = read_shape_config(shape_config(folder))
    assert (read.dtype, read.block_shape) == (dtype, block)


def test_a_modelopt_hf_quant_config_beside_config_json_is_read(tmp_path):
    # ModelOpt before 0.31 wrote its quantization to hf_quant_config.json; vLLM reads it there.
    folder = write_config(tmp_path, QWEN3)
    (folder / "hf_quant_config.json").write_text(json.dumps(
        {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "NVFP4"}}))
    with pytest.raises(UserError, match="hf_quant_config.json quant_algo=NVFP4"):
        read_shape_config(shape_config(folder))


@pytest.mark.parametrize("torch_dtype, dtype", [("bfloat16", "bf16"), ("float16", "fp16"),
                                                ("float32", "bf16"), (None, "bf16")])
def test_unquantized_dtype_as_vllm_runs_it(tmp_path, torch_dtype, dtype):
    config = {k: v for k, v in QWEN3.items() if k != "torch_dtype"}
    if torch_dtype:
        config["dtype"] = torch_dtype  # the key newer transformers write
    read, _ = read_shape_config(shape_config(write_config(tmp_path, config)))
    assert (read.dtype, read.block_shape) == (dtype, None)


def test_fields_given_override_the_file_and_say_so():
    read, model = read_shape_config(shape_config(HF / "Qwen3-30B-A3B-FP8", experts=64,
                                                 dtype="bf16"))
    assert (read.experts, read.topk, read.dtype, read.block_shape) == (64, 8, "bf16", None)
    assert "shape.experts=64 (given)" in model.read
    # A dtype given for a format this kernel cannot run tunes that dtype (e.g. a BF16 copy).
    read, _ = read_shape_config(shape_config(HF / "gpt-oss-20b", dtype="bf16"))
    assert (read.experts, read.topk, read.intermediate_size, read.dtype) == (32, 4, 2880, "bf16")


@pytest.mark.parametrize("config, words", [
    ({**QWEN3, "architectures": ["Ernie4_5_MoeForCausalLM"]},
     "Ernie4_5_MoeForCausalLM is not one autotune knows"),
    ({**QWEN3, "num_experts": 0}, "no routed experts (num_experts=0)"),
    ({**QWEN3, "moe_intermediate_size": "768"}, 'moe_intermediate_size="768" is not a positive '
                                                "integer; give shape.intermediate_size="),
    ({k: v for k, v in QWEN3.items() if k != "num_experts_per_tok"},
     "has no num_experts_per_tok, which vLLM's Qwen3MoeForCausalLM reads"),
    ({k: v for k, v in QWEN3.items() if k != "architectures"}, "has no architectures list"),
    ({**QWEN3, "torch_dtype": "float8_e4m3fn"}, "torch_dtype=float8_e4m3fn is not one of"),
    ({**QWEN3, "architectures": ["JambaForCausalLM"], "num_experts": 1}, "no routed experts"),
])
def test_configs_that_do_not_give_a_moe_layer_are_refused(tmp_path, config, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_shape_config(shape_config(write_config(tmp_path, config)))


def test_unknown_architecture_is_tuned_from_fields_given(tmp_path):
    folder = write_config(tmp_path, {**QWEN3, "architectures": ["Ernie4_5_MoeForCausalLM"]})
    read, _ = read_shape_config(shape_config(folder, experts=64, topk=6, intermediate_size=1536,
                                             hidden_size=2560))
    assert (read.experts, read.topk, read.dtype) == (64, 6, "bf16")


@pytest.mark.parametrize("model, words", [
    ("", "shape=hf needs the model: shape.model=PATH"),
    ("no/such/place/config.json", "no such file or folder"),
])
def test_a_missing_model_is_refused(model, words):
    with pytest.raises(UserError, match=words):
        read_shape_config(shape_config(model))


def test_a_json_list_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")
    with pytest.raises(UserError, match="holds a JSON list, not a model config"):
        read_shape_config(shape_config(path))


def cache_model(hub, model_id, revisions, main=None):
    repo = hub / ("models--" + model_id.replace("/", "--"))
    for revision in revisions:
        snapshot = repo / "snapshots" / revision
        snapshot.mkdir(parents=True)
        shutil.copy(HF / "Qwen3-30B-A3B" / "config.json", snapshot / "config.json")
    if main:
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(main)
    return repo


@pytest.mark.parametrize("variable, hub", [("HF_HUB_CACHE", "hub"), ("HF_HOME", "home/hub")])
def test_a_model_id_is_found_in_the_local_cache(tmp_path, monkeypatch, variable, hub):
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, str(tmp_path / hub.split("/")[0]))
    repo = cache_model(tmp_path / hub, "Qwen/Qwen3-30B-A3B", ["a1", "b2"], main="b2")
    read, model = read_shape_config(shape_config("Qwen/Qwen3-30B-A3B"))
    assert model.path == repo / "snapshots" / "b2" / "config.json"
    assert (read.experts, read.intermediate_size) == (128, 768)


def test_a_model_id_not_in_the_cache_is_refused_without_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        read_shape_config(shape_config("Qwen/Qwen3-30B-A3B"))
    cache_model(tmp_path, "Qwen/Qwen3-30B-A3B", ["a1", "b2"])  # two revisions, no refs/main
    with pytest.raises(UserError, match="2 revisions and no refs/main; give the snapshot folder"):
        read_shape_config(shape_config("Qwen/Qwen3-30B-A3B"))
