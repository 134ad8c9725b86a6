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
    (GOOD, {"1": {**ENTRY, "BLOCK_SIZE_N": 48}}, "BLOCK_SIZE_N=48"),
    (GOOD, "{not json", "not readable as JSON"),
])
def test_check_rejects_with_a_one_line_reason(tmp_path, name, data, words):
    findings = [f for f in check_file(write(tmp_path, name, data)) if f.level == "error"]
    assert findings and any(words in str(f) for f in findings), findings
    assert all("\n" not in str(f) for f in findings)
