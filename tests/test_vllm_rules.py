"""vLLM 0.33.0's runtime rules, one table per rule; each row's comment names the vLLM function
(vllm/model_executor/layers/fused_moe/) whose behaviour it encodes."""

import pytest

from autotune.bench.timing import TimerSpec, runtime_config
from autotune.problem import vllm_rules


def tile(bm, bn, bk=128, group=1, warps=4, stages=3):
    return {"BLOCK_SIZE_M": bm, "BLOCK_SIZE_N": bn, "BLOCK_SIZE_K": bk, "GROUP_SIZE_M": group,
            "num_warps": warps, "num_stages": stages}


HOPPER, ADA, BLACKWELL, RTX_PRO = (9, 0), (8, 9), (10, 0), (12, 0)


# invoke_fused_moe_triton_kernel: SWAP_AB = enable_swap_ab(...) if use_fp8_w8a8 else False;
# enable_swap_ab (utils.py): is_device_capability(90) and BLOCK_SIZE_M < 64 and BLOCK_SIZE_N >= 64.
@pytest.mark.parametrize("config, dtype, capability, swapped", [
    (tile(16, 64), "fp8_w8a8", HOPPER, True),  # fp8 (block or per-tensor), small tile, SM90
    (tile(32, 256), "fp8_w8a8", HOPPER, True),
    (tile(8, 64), "fp8_w8a8", HOPPER, True),
    (tile(64, 64), "fp8_w8a8", HOPPER, False),  # BLOCK_SIZE_M >= 64
    (tile(16, 32), "fp8_w8a8", HOPPER, False),  # BLOCK_SIZE_N < 64
    (tile(16, 64), "bf16", HOPPER, False),  # use_fp8_w8a8 is False: never swapped
    (tile(16, 64), "fp16", HOPPER, False),
    (tile(16, 64), "int8_w8a16", HOPPER, False),
    (tile(16, 64), "fp8_w8a8", (9, 1), False),  # is_device_capability(90) is exact
    (tile(16, 64), "fp8_w8a8", ADA, False),
    (tile(16, 64), "fp8_w8a8", BLACKWELL, False),
    (tile(16, 64), "fp8_w8a8", RTX_PRO, False),
    (tile(16, 64), "fp8_w8a8", None, False),  # no GPU: the interpreter runs the plain kernel
])
def test_swap_ab_as_vllm_decides_it(config, dtype, capability, swapped):
    assert vllm_rules.swap_ab(config, dtype, capability) is swapped


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "int8_w8a16"])
def test_the_gpu_timer_never_swaps_unquantized_or_w8a16_on_hopper(dtype):
    spec = TimerSpec(E=8, N=64, K=64, topk=2, dtype=dtype, block_shape=None, capability=HOPPER)
    assert runtime_config(tile(16, 64), spec)["SWAP_AB"] is False


def test_the_gpu_timer_swaps_fp8_small_tiles_on_hopper_only():
    for block in [(128, 128), None]:
        hopper = TimerSpec(E=8, N=128, K=128, topk=2, dtype="fp8_w8a8", block_shape=block,
                           capability=HOPPER)
        assert runtime_config(tile(16, 64), hopper)["SWAP_AB"] is True
        assert runtime_config(tile(64, 64), hopper)["SWAP_AB"] is False
        other = TimerSpec(E=8, N=128, K=128, topk=2, dtype="fp8_w8a8", block_shape=block,
                          capability=RTX_PRO)
        assert runtime_config(tile(16, 64), other)["SWAP_AB"] is False


def test_forced_variants_override_the_rule():
    spec = TimerSpec(E=8, N=64, K=64, topk=2, dtype="bf16", block_shape=None, capability=HOPPER,
                     swap_ab="on")
    assert runtime_config(tile(16, 64), spec)["SWAP_AB"] is True


# resolve_moe_use_td: off on CUDA unless VLLM_TRITON_USE_TD=1; invoke_fused_moe_triton_kernel:
# `use_td = resolve_moe_use_td() and not is_quantized`; moe_use_td_hw_supported: capability >= 10.0.
@pytest.mark.parametrize("dtype, capability, env, used", [
    ("bf16", BLACKWELL, None, False),  # unset: off on CUDA
    ("bf16", BLACKWELL, "1", True),
    ("fp16", RTX_PRO, "1", True),
    ("bf16", BLACKWELL, "0", False),
    ("fp8_w8a8", BLACKWELL, "1", False),  # quantized: falls back to the pointer path
    ("int8_w8a16", BLACKWELL, "1", False),
    ("bf16", HOPPER, "1", False),  # tile::gather4 needs sm_100+
])
def test_tensor_descriptor_path(dtype, capability, env, used):
    assert vllm_rules.uses_tensor_descriptors(dtype, capability, env) is used


# invoke_fused_moe_triton_kernel: BLOCK_SIZE_K = min(BLOCK_SIZE_K, min(block_shape)) when set.
@pytest.mark.parametrize("block_k, block_shape, runs", [
    (256, (128, 128), 128),
    (128, (128, 128), 128),
    (64, (128, 128), 64),
    (256, (64, 128), 64),  # the smaller of the two block dimensions
    (256, None, 256),  # no block quantization: as written
])
def test_block_size_k_clamp(block_k, block_shape, runs):
    assert vllm_rules.block_size_k(block_k, block_shape) == runs
    assert vllm_rules.runs_as(tile(16, 64, block_k), block_shape)["BLOCK_SIZE_K"] == runs


# _prepare_expert_assignment: naive when expert_map is None and num_tokens * top_k * 4 <= E.
@pytest.mark.parametrize("num_pairs, experts, expert_map, naive", [
    (8, 32, False, True),  # M=1, top-8, E=32
    (8, 31, False, False),
    (9, 36, False, True),
    (8, 256, True, False),  # an expert map (EP) always aligns
    (64, 256, False, True),  # M=8, top-8, E=256
    (72, 256, False, False),  # M=9
])
def test_small_m_shortcut_without_alignment(num_pairs, experts, expert_map, naive):
    assert vllm_rules.naive_assignment(num_pairs, experts, expert_map=expert_map) is naive


# invoke_fused_moe_triton_kernel: EM = min(EM, A.size(0) * top_k * BLOCK_SIZE_M) when
# A.size(0) < BLOCK_SIZE_M.
@pytest.mark.parametrize("padded, rows_a, top_k, bm, rows", [
    (4096, 2, 8, 16, 256),  # 2 tokens: at most 16 row blocks hold pairs
    (4096, 16, 8, 16, 4096),  # rows_a == BLOCK_SIZE_M: no shortcut
    (128, 2, 8, 16, 128),  # never more than the buffer
    (8192, 16, 1, 64, 1024),  # GEMM2 (top_k=1, A = M*topk rows)
])
def test_small_m_grid(padded, rows_a, top_k, bm, rows):
    assert vllm_rules.grid_rows(padded, rows_a, top_k, bm) == rows


# try_get_optimal_moe_config: configs[min(configs.keys(), key=lambda x: abs(x - M))], keys in the
# file's order (get_moe_configs reads the JSON into a dict).
@pytest.mark.parametrize("keys, M, key", [
    ([1, 16, 32], 24, 16),  # a tie: the first key in file order, here the smaller
    ([32, 16, 1], 24, 32),  # a file written in descending order: the first is the larger
    ([1, 16, 32], 25, 32),
    ([1, 16, 32], 4096, 32),
    ([1, 16, 32], 1, 1),
])
def test_nearest_key(keys, M, key):
    assert vllm_rules.nearest_key(keys, M) == key
    assert vllm_rules.nearest_entry({k: {"k": k} for k in keys}, M) == {"k": key}


# get_default_config, fp8 block branch (CUDA).
@pytest.mark.parametrize("M, expected", [
    (1, tile(16, 64, 128, 1, 4, 4)),
    (4, tile(16, 64, 128, 1, 4, 4)),
    (8, tile(16, 64, 128, 1, 4, 3)),
    (16, tile(16, 128, 128, 1, 4, 3)),
    (64, tile(16, 128, 128, 32, 4, 3)),
    (256, tile(64, 128, 128, 32, 4, 3)),
])
def test_default_config_fp8_block(M, expected):
    assert vllm_rules.default_config(M, 256, "fp8_w8a8", (128, 128)) == expected


# get_default_config, general branch: bf16/fp16, fp8 per-tensor (BLOCK_SIZE_K always 128).
@pytest.mark.parametrize("M, E, dtype, expected", [
    (1, 128, "bf16", tile(16, 64, 128, 1, 4, 4)),
    (48, 128, "bf16", tile(32, 64, 128, 1, 4, 3)),
    (96, 128, "bf16", tile(32, 128, 64, 1, 4, 3)),
    (256, 128, "bf16", tile(64, 128, 64, 1, 8, 3)),
    (4096, 8, "fp16", tile(128, 128, 64, 16, 8, 3)),  # 4096 // 8 > 128 tokens per expert
    (4096, 128, "bf16", tile(128, 128, 64, 1, 8, 3)),
    (256, 128, "fp8_w8a8", tile(64, 128, 128, 1, 8, 3)),  # per-tensor fp8 keeps K=128
])
def test_default_config_general(M, E, dtype, expected):
    assert vllm_rules.default_config(M, E, dtype, None) == expected


@pytest.mark.parametrize("shape, device, env, words", [
    ("qwen35_tp1", "h100", None, "SWAP_AB where BLOCK_SIZE_M < 64"),  # fp8 block on SM90
    ("qwen3_30b_a3b_tp1", "h200", None, "no SWAP_AB"),  # bf16 on SM90
    ("qwen35_tp1", "rtxpro6000", None, "no SWAP_AB"),  # fp8 off SM90
    ("qwen3_30b_a3b_tp1", "b200", "1", "tensor-descriptor path, which is not timed"),
])
def test_the_plan_says_which_variant_vllm_runs(monkeypatch, shape, device, env, words):
    from autotune.plan import build_plan
    from tests.conftest import compose

    if env is None:
        monkeypatch.delenv("VLLM_TRITON_USE_TD", raising=False)
    else:
        monkeypatch.setenv("VLLM_TRITON_USE_TD", env)
    plan = build_plan(compose(f"shape={shape}", f"device={device}"), probe_gpu=False)
    assert words in plan.vllm_variant()
    assert f"vllm       {vllm_rules.VLLM_VERSION}" in plan.describe()


# _get_config_dtype_str (config.py): use_fp8_w8a8 -> fp8_w8a8, use_fp8_w8a16 -> fp8_w8a16,
# use_int8_w8a16 -> int8_w8a16, use_int4_w4a16 -> int4_w4a16, OCP MX -> None, float32 activations
# -> float32, else None (bf16/fp16; int8_w8a8 is not one of its flags).
def test_config_dtypes_are_those_of_get_config_dtype_str():
    assert vllm_rules.CONFIG_DTYPES == ("fp8_w8a8", "fp8_w8a16", "int8_w8a16", "int4_w4a16",
                                        "float32")


# get_device_name_as_file_name: re.sub(r"[\s/]+", "_", name); get_config_file_name:
# "NVIDIA_H200" if "H200" in device_name.split("_").
@pytest.mark.parametrize("device_name, file_name, token", [
    ("NVIDIA H100 80GB HBM3", "NVIDIA_H100_80GB_HBM3", "NVIDIA_H100_80GB_HBM3"),
    ("NVIDIA H200", "NVIDIA_H200", "NVIDIA_H200"),
    ("NVIDIA H200 NVL", "NVIDIA_H200_NVL", "NVIDIA_H200"),
    ("NVIDIA GH200 480GB", "NVIDIA_GH200_480GB", "NVIDIA_GH200_480GB"),  # GH200 is no H200 word
    ("NVIDIA  A100 /X", "NVIDIA_A100_X", "NVIDIA_A100_X"),  # runs of spaces and '/' are one '_'
    ("NVIDIA A100-SXM4-80GB", "NVIDIA_A100-SXM4-80GB", "NVIDIA_A100-SXM4-80GB"),
    ("Intel(R) Arc(TM) Pro B70 Graphics", "Intel(R)_Arc(TM)_Pro_B70_Graphics",
     "Intel(R)_Arc(TM)_Pro_B70_Graphics"),
])
def test_device_token_of_the_lookup(device_name, file_name, token):
    assert vllm_rules.device_file_name(device_name) == file_name
    assert vllm_rules.config_device(device_name) == token


# Which file names vLLM builds: get_moe_configs looks up get_config_file_name(E, N, dtype,
# block_shape) with _get_config_dtype_str's dtype; FlyDSL's try_get_optimal_config looks up
# E=..,N=..,device_name=..,dtype=int4_w4a16,backend=flydsl.json (no H200 folding).
@pytest.mark.parametrize("device, dtype, block, backend, function", [
    ("NVIDIA_H200", None, None, None, None),  # bf16/fp16
    ("NVIDIA_H200", "fp8_w8a8", (128, 128), None, None),
    ("NVIDIA_H200", "fp8_w8a16", None, None, None),
    ("NVIDIA_H200", "float32", None, None, None),
    ("NVIDIA_H200", "int4_w4a16", None, None, None),
    ("AMD_Instinct_MI325X", None, (128, 128), None, None),  # int8_w8a8 block: no dtype token
    ("AMD_Instinct_MI355X", "int4_w4a16", None, "flydsl", None),
    ("NVIDIA_H200_NVL", "fp8_w8a8", None, None, "get_config_file_name"),  # H200 folding
    ("NVIDIA H200", None, None, None, "get_device_name_as_file_name"),
    ("NVIDIA_H100_80GB_HBM3", "bf16", None, None, "_get_config_dtype_str"),
    ("NVIDIA_H100_80GB_HBM3", "float8", None, None, "_get_config_dtype_str"),
    ("NVIDIA_A100-SXM4-80GB", "int8_w8a8", None, None, "_get_config_dtype_str"),
    ("NVIDIA_A100-SXM4-80GB", "int8_w8a8", (128, 128), None, "_get_config_dtype_str"),
    ("NVIDIA_H200", "fp8_w8a8", (0, 128), None, "get_config_file_name"),  # not all(block_shape)
    ("AMD_Instinct_MI355X", "fp8_w8a8", None, "flydsl", "try_get_optimal_config"),
    ("AMD_Instinct_MI355X", "int4_w4a16", (128, 128), "flydsl", "try_get_optimal_config"),
    ("NVIDIA_H200", None, None, "triton", "get_config_file_name"),  # no backend token there
])
def test_which_file_names_vllm_reads(device, dtype, block, backend, function):
    reasons = vllm_rules.never_read(device, dtype, block, backend)
    if function is None:
        assert reasons == []
    else:
        assert len(reasons) == 1 and function in reasons[0], reasons


# try_get_optimal_moe_config: min(keys, key=|key - M|) in file order, so only a tie between two
# neighbouring keys can differ from an ascending file, and only where the larger is written first.
@pytest.mark.parametrize("keys, ties", [
    ([1, 2, 4, 8, 16], []),  # ascending
    ([16, 8, 4, 2, 1], [(3, 4), (6, 8), (12, 16)]),  # 1 and 2 have no integer midpoint
    ([256, 768, 512], [(640, 768)]),
    ([3, 1], [(2, 3)]),  # M=2 lies midway: served by 3, the key written first
])
def test_key_order_only_decides_ties(keys, ties):
    assert vllm_rules.ties_to_larger_key(keys) == ties


# invoke_fused_moe_triton_kernel: fused_moe_kernel[grid](..., **config); Triton takes its
# platform's launch options as keywords there.
@pytest.mark.parametrize("device, platform, allowed, not_allowed", [
    ("NVIDIA_L40S", "CUDA", "num_ctas", "waves_per_eu"),
    ("NVIDIA_H200", "CUDA", "maxnreg", "grf_mode"),
    ("AMD_Instinct_MI300X", None, "waves_per_eu", None),  # not known here: any platform's
    ("Intel(R)_Arc(TM)_Pro_B70_Graphics", None, "grf_mode", None),
])
def test_launch_options_by_platform(device, platform, allowed, not_allowed):
    assert vllm_rules.platform(device) == platform
    assert allowed in vllm_rules.launch_keys(device)
    assert not_allowed is None or not_allowed not in vllm_rules.launch_keys(device)


# _snap_flydsl_int4_tiles (fused_flydsl_moe.py): each tile to the nearest registered one, the
# smaller on a tie; tile_n2 is only registered at 128.
@pytest.mark.parametrize("tiles, runs", [
    ((16, 64, 128, 128, 128), (16, 64, 128, 128, 128)),  # registered: as written
    ((16, 64, 512, 256, 256), (16, 64, 256, 128, 256)),  # pre-aiter#4646 tiles
    ((8, 32, 64, 64, 64), (16, 64, 128, 128, 128)),
    ((48, 96, 192, 128, 192), (32, 64, 128, 128, 128)),  # ties: the smaller
    ((256, 256, 1024, 128, 512), (128, 128, 256, 128, 256)),
])
def test_flydsl_tiles_snap_to_registered_ones(tiles, runs):
    names = ("tile_m", "tile_n", "tile_k", "tile_n2", "tile_k2")
    assert vllm_rules.snap_flydsl_tiles(dict(zip(names, tiles))) == dict(zip(names, runs))


# refine_fp8_moe_block_shape (fused_moe/oracle/fp8.py): [g, g], g = gcd(block_n, block_k, N, K),
# for a shard that is not whole blocks, when g >= 32; else vLLM refuses the split.
@pytest.mark.parametrize("N, K, tp, block", [
    (768, 2048, 1, (128, 128)),  # whole blocks
    (384, 2048, 2, (128, 128)),
    (192, 2048, 4, (64, 64)),  # Qwen3-30B-A3B-FP8 at tp=4
    (96, 2048, 8, (32, 32)),
    (48, 2048, 16, None),  # g = 16 < 32: refused
    (320, 3072, 4, (64, 64)),
])
def test_refined_fp8_block_at_a_tp_split(N, K, tp, block):
    assert vllm_rules.refined_block_shape((128, 128), N, K, tp) == block
