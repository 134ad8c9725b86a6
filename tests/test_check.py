"""`python -m autotune.check`: accepts every file vLLM ships, warns entry by entry where vLLM
rewrites an entry at run time, and rejects broken files with one line per finding."""

import json
import subprocess
import sys

from tests.conftest import NEVER_READ, VLLM_CONFIGS, VLLM_CONFIGS_ALL, bound

ENTRY = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
         "num_warps": 4, "num_stages": 3}
GOOD = "E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"


def check(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "autotune.check", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=bound(60))


def test_accepts_every_shipped_file_and_warns_where_block_k_runs_as_128():
    result = check(VLLM_CONFIGS)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    files = sorted(VLLM_CONFIGS.glob("*.json"))
    assert {line.split(": ", 1)[0] for line in lines} == {str(p) for p in files}
    assert not [line for line in lines if ": error: " in line]
    for path in files:
        data = json.loads(path.read_text())
        rewritten = [k for k, v in data.items() if k != "triton_version"
                     and "block_shape=[128,128]" in path.name and v["BLOCK_SIZE_K"] > 128]
        warned = [line for line in lines if line.startswith(f"{path}: warning: ")]
        assert warned == [f"{path}: warning: {k}: BLOCK_SIZE_K=256 runs as 128 with block_shape "
                          f"[128,128] (invoke_fused_moe_triton_kernel)" for k in rewritten]
        if not rewritten:
            assert f"{path}: ok" in lines
    assert sum(": warning: " in line for line in lines) > 20  # many shipped entries do this


def test_over_vllms_corpus_only_the_files_it_never_reads_have_an_error():
    result = check(VLLM_CONFIGS_ALL)
    assert result.returncode == 1  # the 9 files vLLM never reads
    lines = result.stdout.splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert sorted(line.split(": ", 1)[0] for line in errors) == sorted(
        str(VLLM_CONFIGS_ALL / name) for name in NEVER_READ)
    assert all("_get_config_dtype_str never gives" in line for line in errors)
    warned = {line.split(": ", 1)[0] for line in lines if ": warning: " in line}
    ok = [line for line in lines if line.endswith(": ok")]
    # The README's counts: 9 files with an error, 47 with warnings only, 204 clean.
    assert (len(errors), len(warned), len(ok)) == (9, 47, 204)
    assert sum(": warning: " in line for line in lines) == 294
    order = [line for line in lines if "not in ascending order" in line]
    assert len(order) == 3 and all(": warning: " in line for line in order)


def _entries(**changes):
    return {"1": ENTRY, "16": {**ENTRY, **changes}}


BROKEN = {  # file name, content, the words of its one-line reason
    "E=256,N=512,device_name=NVIDIA H200.json": ({"1": ENTRY}, "has spaces"),
    "E=256,N=512,device_name=NVIDIA_H200_NVL,dtype=fp8_w8a8.json": (
        {"1": ENTRY}, "get_config_file_name looks up every H200 as NVIDIA_H200"),
    "E=256,N=512,device_name=NVIDIA_H200,dtype=bf16.json": (
        {"1": ENTRY}, "_get_config_dtype_str never gives dtype=bf16"),
    "E=8,N=64,device_name=cpu.json": ({"1": ENTRY}, "device_name=cpu is a CPU smoke run's file"),
    "non-integer-key/" + GOOD: ({"1": ENTRY, "1.5": ENTRY}, "1.5: key is not a positive integer"),
    "missing/" + GOOD: ({"1": {k: v for k, v in ENTRY.items() if k != "GROUP_SIZE_M"}},
                        "1: missing GROUP_SIZE_M"),
    "non-integer-param/" + GOOD: (_entries(num_warps="4"), "16: num_warps='4' is not a positive"),
    "block-k/" + GOOD.replace("[128,128]", "[128,96]"): (
        _entries(BLOCK_SIZE_K=64), "16: BLOCK_SIZE_K=64 does not divide block_k=96"),
    "sglang/" + GOOD.replace("[128,128]", "[128, 128]"): (
        {"triton_version": "3.6.0", "1": ENTRY}, "must not hold triton_version"),
}


def test_rejects_broken_files_each_with_a_one_line_reason(tmp_path):
    paths = []
    for name, (data, _) in BROKEN.items():
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(data))
        paths.append(path)
    result = check(*paths)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    for path, (_, words) in zip(paths, BROKEN.values()):
        errors = [line for line in lines if line.startswith(f"{path}: error: ")]
        assert any(words in line for line in errors), (words, lines)


def test_exit_status_says_whether_any_file_has_an_error(tmp_path):
    good = tmp_path / GOOD
    good.write_text(json.dumps({"triton_version": "3.6.0", "1": ENTRY}))
    assert check(good).returncode == 0 and check(good).stdout == f"{good}: ok\n"
    warned = tmp_path / "w" / GOOD
    warned.parent.mkdir()
    warned.write_text(json.dumps({"1": {**ENTRY, "BLOCK_SIZE_K": 256}}))
    assert check(good, warned).returncode == 0  # a warning: vLLM runs it, not as written
    missing = check(good, tmp_path / "nothing.json")
    assert missing.returncode == 1 and "nothing.json: error: nothing.json: no such file" in \
        missing.stdout
    assert check().returncode == 2 and "usage" in check().stdout
