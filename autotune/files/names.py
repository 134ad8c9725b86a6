"""Config file names: the tokens vLLM (and SGLang) look a file up by, built and parsed here."""

from __future__ import annotations

import re
from typing import Optional

from autotune.problem import vllm_rules

# The dtype tokens vLLM looks up (`_get_config_dtype_str`); our files carry fp8_w8a8, int8_w8a16
# or none (bf16/fp16).
DTYPE_TOKENS = vllm_rules.CONFIG_DTYPES
# SGLang-named files keep the tokens this check used before (SGLang's lookup was not re-read).
SGLANG_DTYPE_TOKENS = ("fp8_w8a8", "int8_w8a8", "int8_w8a16", "int4_w4a16")

_NAME = re.compile(
    r"^E=(?P<E>\d+),N=(?P<N>\d+),device_name=(?P<device>[^,]+)"
    r"(?:,dtype=(?P<dtype>[^,]+))?(?:,block_shape=\[(?P<bn>\d+), ?(?P<bk>\d+)\])?"
    r"(?:,backend=(?P<backend>[^,]+))?\.json$"
)


def device_token(device_name: str, flavor: str = "vllm") -> str:
    """The device_name token looked up: spaces -> underscores; vLLM also reads any H200 as
    NVIDIA_H200 (SGLang does not), as vllm_rules.config_device says."""
    if flavor == "vllm":
        return vllm_rules.config_device(device_name)
    return device_name.replace(" ", "_")


def dtype_token(dtype: str) -> Optional[str]:
    """Unquantized bf16/fp16 files carry no dtype at all (a `dtype=bf16` file is never read)."""
    return dtype if dtype in DTYPE_TOKENS else None


def config_file_name(E: int, N: int, device_name: str, dtype: str,
                     block_shape: Optional[tuple[int, int]], flavor: str = "vllm") -> str:
    parts = [f"E={E}", f"N={N}", f"device_name={device_token(device_name, flavor)}"]
    token = dtype_token(dtype)
    if token:
        parts.append(f"dtype={token}")
    if block_shape and all(block_shape):
        sep = "," if flavor == "vllm" else ", "  # SGLang writes a space inside the brackets
        parts.append(f"block_shape=[{block_shape[0]}{sep}{block_shape[1]}]")
    return ",".join(parts) + ".json"


def sglang_subdir(triton_version: str) -> str:
    """SGLang's per-Triton folder: `triton_3_6_0` (it reads configs/triton_X_Y_Z/ first)."""
    return "triton_" + "_".join(triton_version.split("+")[0].split(".")[:3])


def parse_file_name(name: str) -> Optional[dict]:
    """E, N, device, dtype, block_shape and backend of a config file name (None: not named like
    one); flavor "sglang" where block_shape has SGLang's space."""
    m = _NAME.match(name)
    if not m:
        return None
    block = (int(m["bn"]), int(m["bk"])) if m["bn"] else None
    return {"E": int(m["E"]), "N": int(m["N"]), "device": m["device"], "dtype": m["dtype"],
            "block_shape": block, "backend": m["backend"],
            "flavor": "sglang" if ", " in name else "vllm"}
