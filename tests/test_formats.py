"""Config files: vLLM's exact names and layout, and the check that vLLM's own files pass."""

import json
from pathlib import Path

import pytest

from autotune.files.atomic import write_atomic
from autotune.files.check import check_file
from autotune.files.names import config_file_name, device_token, sglang_subdir
from autotune.files.vllm import read_entries, render
from tests.conftest import NEVER_READ, VLLM_CONFIGS, VLLM_CONFIGS_ALL, VLLM_OTHER_NAMES


@pytest.mark.parametrize("name, token", [
    ("NVIDIA H100 80GB HBM3", "NVIDIA_H100_80GB_HBM3"),
    ("NVIDIA H200", "NVIDIA_H200"),
    ("NVIDIA H200 NVL", "NVIDIA_H200"),
    ("NVIDIA GH200 480GB", "NVIDIA_GH200_480GB"),  # vLLM folds the word H200 only
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition",
     "NVIDIA_RTX_PRO_6000_Blackwell_Server_Edition"),
])
def test_device_token_is_vllms(name, token):
    assert device_token(name) == token


@pytest.mark.parametrize("dtype, block, flavor, expected", [
    ("fp8_w8a8", (128, 128), "vllm",
     "E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"),
    ("fp8_w8a8", (128, 128), "sglang",
     "E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128, 128].json"),
    ("fp8_w8a8", None, "vllm", "E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8.json"),
    ("bf16", None, "vllm", "E=256,N=512,device_name=NVIDIA_H200.json"),
    ("fp16", None, "vllm", "E=256,N=512,device_name=NVIDIA_H200.json"),
    ("int8_w8a16", None, "vllm", "E=256,N=512,device_name=NVIDIA_H200,dtype=int8_w8a16.json"),
])
def test_file_names_follow_vllm_and_sglang(dtype, block, flavor, expected):
    assert config_file_name(256, 512, "NVIDIA H200", dtype, block, flavor) == expected


def test_sglang_keeps_the_full_device_name_and_a_folder_per_triton_version():
    # SGLang only replaces spaces (no H200 folding) and reads configs/triton_X_Y_Z/ first.
    assert config_file_name(64, 1536, "NVIDIA H200 NVL", "fp8_w8a8", (128, 128), "sglang") == (
        "E=64,N=1536,device_name=NVIDIA_H200_NVL,dtype=fp8_w8a8,block_shape=[128, 128].json")
    assert sglang_subdir("3.6.0") == "triton_3_6_0"
    assert sglang_subdir("3.5.1+git1234abcd") == "triton_3_5_1"


ENTRY = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
         "num_warps": 4, "num_stages": 3}


def test_render_is_vllms_layout_with_ascending_integer_keys(tmp_path):
    text = render({64: ENTRY, 2: ENTRY, 16: ENTRY}, "3.6.0")
    assert list(json.loads(text)) == ["triton_version", "2", "16", "64"]
    assert text.startswith('{\n    "triton_version": "3.6.0",\n    "2": {\n        "BLOCK_SIZE_M": 16,')
    assert text.endswith("\n    }\n}\n")
    path = tmp_path / "E=8,N=64,device_name=NVIDIA_H200.json"
    write_atomic(path, text)
    assert read_entries(path) == {2: ENTRY, 16: ENTRY, 64: ENTRY}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


# Every verdict names the vLLM function whose behaviour makes it one (SGLang's rules excepted).
VLLM_FUNCTIONS = ("get_device_name_as_file_name", "get_config_file_name", "_get_config_dtype_str",
                  "get_moe_configs", "try_get_optimal_moe_config",
                  "invoke_fused_moe_triton_kernel", "fused_moe_kernel", "try_get_optimal_config",
                  "fused_flydsl_moe_impl", "_snap_flydsl_int4_tiles")


def names_a_vllm_function(finding) -> bool:
    return any(f in finding.message for f in VLLM_FUNCTIONS)


def test_the_corpus_copy_is_all_of_vllms_nvidia_files():
    assert len(list(VLLM_CONFIGS_ALL.glob("*.json"))) == 260
    assert len(VLLM_OTHER_NAMES.read_text().split()) == 78  # 338 in vLLM 0.33.0's wheel


@pytest.mark.parametrize("path", sorted(VLLM_CONFIGS_ALL.glob("*.json")),
                         ids=lambda p: p.name[:60])
def test_check_has_no_error_on_a_shipped_file_vllm_reads(path):
    findings = check_file(path)
    errors = [f for f in findings if f.level == "error"]
    if path.name in NEVER_READ:
        assert len(errors) == 1 and "_get_config_dtype_str never gives" in errors[0].message
    else:
        assert errors == []
    assert all(names_a_vllm_function(f) for f in findings), findings


def _one_entry_file_for(name: str) -> dict:
    if "backend=flydsl" in name:
        return {"1": {"tile_m": 16, "tile_n": 64, "tile_k": 128, "tile_n2": 128, "tile_k2": 128}}
    if "AMD" in name or "Radeon" in name:
        return {"1": {**ENTRY, "waves_per_eu": 0, "matrix_instr_nonkdim": 16, "kpack": 2}}
    if "Intel" in name:
        return {"1": {**ENTRY, "grf_mode": "large"}}
    return {"1": ENTRY}


@pytest.mark.parametrize("name", VLLM_OTHER_NAMES.read_text().split(), ids=lambda n: n[:60])
def test_check_reads_every_amd_and_intel_name_vllm_ships_as_vllm_does(tmp_path, name):
    # Their contents are not kept here: the names, with one entry of their kind.
    assert check_file(write(tmp_path, name, _one_entry_file_for(name))) == []


def test_check_warns_entry_by_entry_where_vllm_rewrites_block_k():
    path = VLLM_CONFIGS / ("E=256,N=384,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,"
                           "block_shape=[128,128].json")
    warnings = [f for f in check_file(path) if f.level == "warning"]
    data = json.loads(path.read_text())
    rewritten = [k for k, v in data.items() if k != "triton_version" and v["BLOCK_SIZE_K"] > 128]
    assert rewritten and sorted(w.where for w in warnings) == sorted(rewritten)
    assert all("runs as 128" in w.message for w in warnings)


def write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


GOOD = "E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"
FLYDSL = "E=384,N=256,device_name=AMD_Instinct_MI355X,dtype=int4_w4a16,backend=flydsl.json"
TILES = {"tile_m": 16, "tile_n": 64, "tile_k": 128, "tile_n2": 128, "tile_k2": 128}


@pytest.mark.parametrize("name, data, words", [
    # vLLM never looks the file up
    ("E=256,N=512,device_name=NVIDIA H200.json", {"1": ENTRY}, "has spaces: "
     "get_device_name_as_file_name"),
    ("E=256,N=512,device_name=NVIDIA_H200_NVL.json", {"1": ENTRY},
     "get_config_file_name looks up every H200 as NVIDIA_H200"),
    ("E=256,N=512,device_name=NVIDIA_H200,dtype=bf16.json", {"1": ENTRY},
     "_get_config_dtype_str never gives dtype=bf16"),
    ("E=256,N=512,device_name=NVIDIA_H200,dtype=int8_w8a8.json", {"1": ENTRY},
     "int8_w8a8 looks up the name without a dtype token"),
    (GOOD.replace("[128,128]", "[0,128]"), {"1": ENTRY}, "get_config_file_name leaves out"),
    ("E=256,N=512,device_name=NVIDIA_H200,backend=triton.json", {"1": ENTRY},
     "no vLLM lookup names a backend=triton file"),
    (FLYDSL.replace("int4_w4a16", "fp8_w8a8"), {"1": TILES}, "try_get_optimal_config"),
    ("E=256,N=512.json", {"1": ENTRY}, "name is not"),
    # vLLM fails on the file, or runs vLLM's default config
    (GOOD, "{not json", "not readable as JSON"),
    (GOOD, [ENTRY], "top level is not a JSON object"),
    (GOOD, {"triton_version": "3.6.0"}, "no batch-size entries: try_get_optimal_moe_config"),
    (GOOD, {"one": ENTRY}, "not a positive integer batch size: get_moe_configs fails"),
    (GOOD, {"1.5": ENTRY}, "not a positive integer batch size"),
    (GOOD, {"1": 5}, "entry is not an object of kernel parameters"),
    (GOOD, {"1": {k: v for k, v in ENTRY.items() if k != "GROUP_SIZE_M"}},
     "missing GROUP_SIZE_M: invoke_fused_moe_triton_kernel cannot launch"),
    (GOOD, {"1": {**ENTRY, "num_stages": 3.5}}, "num_stages=3.5 is not a positive integer"),
    (GOOD, {"1": {**ENTRY, "BLOCK_SIZE_M": 24}}, "BLOCK_SIZE_M=24 is not a power of two"),
    (GOOD, {"1": {**ENTRY, "num_warps": 6}}, "num_warps=6 is not a power of two"),
    (GOOD, {"1": {**ENTRY, "waves_per_eu": 2}},
     "waves_per_eu is a launch option of Triton on ROCm, not on CUDA"),
    # vLLM misreads the weight scales
    (GOOD.replace("[128,128]", "[128,96]"), {"1": {**ENTRY, "BLOCK_SIZE_K": 64}},
     "BLOCK_SIZE_K=64 does not divide block_k=96: fused_moe_kernel reads one scale per K tile"),
    # FlyDSL's files
    (FLYDSL, {"triton_version": "3.6.0", "1": TILES}, "a FlyDSL file must not hold triton_version"),
    (FLYDSL, {"1": {k: v for k, v in TILES.items() if k != "tile_n2"}},
     "missing tile_n2: fused_flydsl_moe_impl"),
    (FLYDSL, {"1": {**TILES, "tile_m": "16"}}, "tile_m='16' is not a positive integer"),
    # SGLang's rule for its own files
    (GOOD.replace("[128,128]", "[128, 128]"), {"triton_version": "3.6.0", "1": ENTRY},
     "SGLang reads every key as a batch size"),
])
def test_check_rejects_with_a_one_line_reason(tmp_path, name, data, words):
    findings = [f for f in check_file(write(tmp_path, name, data)) if f.level == "error"]
    assert findings and any(words in str(f) for f in findings), findings
    assert all("\n" not in str(f) for f in findings)
    assert all(names_a_vllm_function(f) for f in findings if "SGLang" not in f.message)


@pytest.mark.parametrize("name, data, words", [
    (GOOD, {"1": {**ENTRY, "BLOCK_SIZE_K": 256}},
     "1: BLOCK_SIZE_K=256 runs as 128 with block_shape [128,128] (invoke_fused_moe_triton_kernel)"),
    (GOOD.replace("[128,128]", "[64,128]"), {"1": ENTRY},  # the clamp takes block_n too
     "1: BLOCK_SIZE_K=128 runs as 64 with block_shape [64,128]"),
    (GOOD, {"16": ENTRY, "2": ENTRY}, "not in ascending order: try_get_optimal_moe_config takes "
     "the first nearest key in file order, so M=9 runs the entry of 16, not 2"),
    (GOOD, {"016": ENTRY}, "016: key is read as batch size 16 (int(key) in get_moe_configs)"),
    (GOOD, {"1": {k: v for k, v in ENTRY.items() if k != "num_warps"}},
     "missing num_warps: invoke_fused_moe_triton_kernel launches with Triton's default"),
    (GOOD, {"1": {**ENTRY, "SPLIT_K": 2}}, "SPLIT_K=2 runs as 1"),
    (GOOD, {"1": {**ENTRY, "foo": 1}}, "unknown keys ['foo'] are passed to the Triton launch"),
    (FLYDSL, {"1": {**TILES, "tile_k": 512, "tile_n2": 256}},
     "1: runs tile_k=512 as 256, tile_n2=256 as 128 (_snap_flydsl_int4_tiles)"),
    (FLYDSL, {"1": {**TILES, "BLOCK_SIZE_M": 16}}, "keys ['BLOCK_SIZE_M'] are not read"),
])
def test_check_warns_where_vllm_runs_an_entry_otherwise_than_written(tmp_path, name, data, words):
    findings = check_file(write(tmp_path, name, data))
    assert [f.level for f in findings] == ["warning"] and words in str(findings[0]), findings
    assert names_a_vllm_function(findings[0])


@pytest.mark.parametrize("name, data", [
    (GOOD, {"triton_version": "3.6.0", "1": ENTRY}),
    (GOOD, {"triton_version": 3, "1": ENTRY}),  # get_moe_configs drops it unread
    (GOOD, {"2": ENTRY, "1": ENTRY}),  # descending, but 1 and 2 have no tie between them
    (GOOD, {"1": {**ENTRY, "BLOCK_SIZE_N": 32}}),  # fused_moe_kernel: one scale per N element
    (GOOD, {"1": {**ENTRY, "BLOCK_SIZE_N": 256}}),
    (GOOD, {"1": {**ENTRY, "SPLIT_K": 1}}),  # AMD files hold SPLIT_K=1
    ("E=8,N=3584,device_name=NVIDIA_L40S.json", {"1": {**ENTRY, "num_ctas": 1}}),
    ("E=256,N=1024,device_name=AMD_Instinct_MI325X,block_shape=[128,128].json",
     {"1": {**ENTRY, "waves_per_eu": 0}}),  # int8_w8a8 block: no dtype token
    ("E=8,N=64,device_name=NVIDIA_H200,dtype=fp8_w8a16.json", {"1": ENTRY}),
    ("E=8,N=64,device_name=NVIDIA_H200,dtype=float32.json", {"1": ENTRY}),
    ("E=8,N=64,device_name=NVIDIA_H200,dtype=int4_w4a16.json", {"1": ENTRY}),
    ("E=8,N=64,device_name=NVIDIA_GH200_480GB.json", {"1": ENTRY}),  # no H200 word
    (FLYDSL, {"1": TILES, "8": {**TILES, "tile_k2": 256}}),
])
def test_check_accepts_what_vllm_runs_as_written(tmp_path, name, data):
    assert check_file(write(tmp_path, name, data)) == []


def test_check_warns_on_a_repeated_key(tmp_path):
    path = write(tmp_path, GOOD, '{"1": %s, "1": %s}' % (json.dumps(ENTRY), json.dumps(ENTRY)))
    assert [str(f) for f in check_file(path)] == [
        "warning: 1: key appears more than once; the last one is used (json.load in "
        "get_moe_configs)"]


def test_check_accepts_an_sglang_named_file_without_triton_version(tmp_path):
    name = "E=64,N=1536,device_name=NVIDIA_H200_NVL,dtype=fp8_w8a8,block_shape=[128, 128].json"
    assert check_file(write(tmp_path, name, {"1": ENTRY})) == []
