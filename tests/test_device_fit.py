"""`python -m autotune.check --device PRESET`: entries compiled for a GPU we do not have."""

import json
import os
import subprocess
import sys

from tests.conftest import VLLM_CONFIGS, bound

RTX = "NVIDIA_RTX_PRO_6000_Blackwell_Server_Edition"
ENTRY = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
         "num_warps": 4, "num_stages": 3}


def check(*args):
    # Compiling for a target needs Triton's compiler, not its interpreter.
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    return subprocess.run([sys.executable, "-m", "autotune.check", *args], env=env,
                          capture_output=True, text=True, timeout=bound(600))


def test_vllms_shipped_rtx_pro_6000_files_compile_and_fit_there():
    files = sorted(VLLM_CONFIGS.glob(f"*device_name={RTX},*.json"))
    assert len(files) == 3
    result = check("--device", "rtxpro6000", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # One line per finding: only warnings (BLOCK_SIZE_K 256 runs as 128; register spills).
    assert lines and all(": warning: " in line for line in lines)
    assert not any("does not compile" in line or "shared memory" in line for line in lines)


def test_an_entry_over_the_devices_shared_memory_is_an_error(tmp_path):
    path = tmp_path / f"E=256,N=512,device_name={RTX},dtype=fp8_w8a8,block_shape=[128,128].json"
    big = {**ENTRY, "BLOCK_SIZE_M": 256, "BLOCK_SIZE_N": 128, "num_warps": 8, "num_stages": 4}
    path.write_text(json.dumps({"1": ENTRY, "4096": big}))
    result = check("--device", "rtxpro6000", str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        line for line in result.stdout.splitlines() if line.startswith(f"{path}: error: 4096: ")]
    assert "compiled for sm_120, the device allows 101376: vLLM's launch fails" in result.stdout
    # The same file on a B200 (sm_100, 232448 bytes per block): it fits (at most a warning).
    b200 = check("--device", "b200", str(path))
    assert b200.returncode == 0 and ": error: " not in b200.stdout, b200.stdout


def test_an_entry_off_the_tables_is_compiled_on_the_spot(tmp_path):
    # BLOCK_SIZE_M=8 is off the vllm space's ladder, so no table has it: compiled for sm_120 now.
    path = tmp_path / f"E=256,N=512,device_name={RTX},dtype=fp8_w8a8,block_shape=[128,128].json"
    path.write_text(json.dumps({"1": {**ENTRY, "BLOCK_SIZE_M": 8}}))
    result = check("--device", "rtxpro6000", str(path))
    assert (result.returncode, result.stdout) == (0, f"{path}: ok\n"), result.stderr


def test_an_unknown_device_is_refused_in_one_line(tmp_path):
    result = check("--device", "rtx9090", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --device rtx9090: not a GPU preset; known: a100, b200, gb200, h100, h20, h200, "
        "l40s, rtx5090, rtxpro6000"]
