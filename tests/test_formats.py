"""Config files: vLLM's exact names and layout, and the check that vLLM's own files pass."""

import json
from pathlib import Path

import pytest

from autotune.formats import (
    check_file,
    config_file_name,
    device_token,
    read_entries,
    render,
    sglang_subdir,
    write_atomic,
)
from tests.conftest import VLLM_CONFIGS


@pytest.mark.parametrize("name, token", [
    ("NVIDIA H100 80GB HBM3", "NVIDIA_H100_80GB_HBM3"),
    ("NVIDIA H200", "NVIDIA_H200"),
    ("NVIDIA H200 NVL", "NVIDIA_H200"),
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


@pytest.mark.parametrize("path", sorted(VLLM_CONFIGS.glob("*.json")), ids=lambda p: p.name[:40])
def test_check_accepts_every_file_vllm_ships(path):
    assert [f for f in check_file(path) if f.level == "error"] == []


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


@pytest.mark.parametrize("name, data, words", [
    ("E=256,N=512,device_name=NVIDIA H200.json", {"1": ENTRY}, "has spaces"),
    ("E=256,N=512,device_name=NVIDIA_H200_NVL.json", {"1": ENTRY}, "every H200 as NVIDIA_H200"),
    ("E=256,N=512,device_name=NVIDIA_H200,dtype=bf16.json", {"1": ENTRY}, "dtype=bf16"),
    ("E=256,N=512.json", {"1": ENTRY}, "name is not"),
    (GOOD, {"16": ENTRY, "2": ENTRY}, "not in ascending order"),
    (GOOD, {"one": ENTRY}, "not a positive integer batch size"),
    (GOOD, {"1": {k: v for k, v in ENTRY.items() if k != "num_warps"}}, "missing num_warps"),
    (GOOD, {"1": {**ENTRY, "num_stages": 3.5}}, "num_stages=3.5"),
    (GOOD, {"1": {**ENTRY, "BLOCK_SIZE_N": 48}}, "BLOCK_SIZE_N=48 neither divides"),
    (GOOD, {"1": {**ENTRY, "BLOCK_SIZE_M": 24}}, "BLOCK_SIZE_M=24 is not a power of two"),
    (GOOD, {"1": {**ENTRY, "num_warps": 6}}, "num_warps=6 is not a power of two"),
    (GOOD.replace("[128,128]", "[128, 128]"), {"triton_version": "3.6.0", "1": ENTRY},
     "SGLang reads every key as a batch size"),
    (GOOD, "{not json", "not readable as JSON"),
])
def test_check_rejects_with_a_one_line_reason(tmp_path, name, data, words):
    findings = [f for f in check_file(write(tmp_path, name, data)) if f.level == "error"]
    assert findings and any(words in str(f) for f in findings), findings
    assert all("\n" not in str(f) for f in findings)


def test_check_warns_on_a_repeated_key(tmp_path):
    path = write(tmp_path, GOOD, '{"1": %s, "1": %s}' % (json.dumps(ENTRY), json.dumps(ENTRY)))
    assert [str(f) for f in check_file(path)] == [
        "warning: 1: key appears more than once; the last one is used"]


def test_check_accepts_an_sglang_named_file_without_triton_version(tmp_path):
    name = "E=64,N=1536,device_name=NVIDIA_H200_NVL,dtype=fp8_w8a8,block_shape=[128, 128].json"
    assert check_file(write(tmp_path, name, {"1": ENTRY})) == []
