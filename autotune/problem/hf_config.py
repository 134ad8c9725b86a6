"""shape=hf: a model's MoE layer read from its Hugging Face config.json, as vLLM reads it.

Which fields hold the routed experts, top-k, one expert's intermediate size and the hidden size
depends on the architecture (vLLM 0.33's model code, each MoE block's FusedMoE arguments, and
`get_model_params` of its tuner benchmarks/kernels/benchmark_moe.py); multimodal models keep them
under `text_config`. The kernel's dtype and quantization block come from `quantization_config`.
Only the JSON is read: no transformers, no network (a model id is looked up in the local Hugging
Face cache only).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from autotune.config import ShapeConfig
from autotune.errors import UserError

SIZE_KEYS = ("experts", "topk", "intermediate_size", "hidden_size")  # ShapeConfig fields read


@dataclass(frozen=True)
class Family:
    """Where an architecture family keeps its MoE layer's sizes (dotted: nested objects)."""

    experts: str
    topk: str
    intermediate_size: str
    hidden_size: str = "hidden_size"
    min_experts: int = 1  # fewer routed experts than this: the layer is a dense MLP in vLLM


QWEN_MOE = Family("num_experts", "num_experts_per_tok", "moe_intermediate_size")
DEEPSEEK = Family("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size")
MIXTRAL = Family("num_local_experts", "num_experts_per_tok", "intermediate_size")
JAMBA = Family("num_experts", "num_experts_per_tok", "intermediate_size", min_experts=2)
DBRX = Family("ffn_config.moe_num_experts", "ffn_config.moe_top_k",
              "ffn_config.ffn_hidden_size", hidden_size="d_model")

ARCHITECTURES = {
    "Qwen2MoeForCausalLM": QWEN_MOE,
    "Qwen3MoeForCausalLM": QWEN_MOE,
    "Qwen3NextForCausalLM": QWEN_MOE,
    "Qwen3VLMoeForConditionalGeneration": QWEN_MOE,  # under text_config
    "Qwen3_5MoeForCausalLM": QWEN_MOE,
    "Qwen3_5MoeForConditionalGeneration": QWEN_MOE,  # under text_config
    "DeepseekV2ForCausalLM": DEEPSEEK,
    "DeepseekV3ForCausalLM": DEEPSEEK,  # DeepSeek-V3, R1, Kimi K2
    "DeepseekV32ForCausalLM": DEEPSEEK,
    "Glm4MoeForCausalLM": DEEPSEEK,  # GLM-4.5, 4.6
    "Glm4MoeLiteForCausalLM": DEEPSEEK,
    "MixtralForCausalLM": MIXTRAL,
    "MiniMaxM2ForCausalLM": MIXTRAL,
    "Llama4ForCausalLM": MIXTRAL,  # intermediate_size is the experts'; intermediate_size_mlp dense
    "Llama4ForConditionalGeneration": MIXTRAL,  # under text_config
    "GptOssForCausalLM": MIXTRAL,
    "JambaForCausalLM": JAMBA,
    "DbrxForCausalLM": DBRX,
}
EXPERT_FIELDS = ("num_experts", "n_routed_experts", "num_local_experts",
                 "ffn_config.moe_num_experts")

# config.json's dtype names; vLLM runs float32 checkpoints in bf16 on GPUs that have it.
TORCH_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "bf16"}

# quant_method values vLLM serves through other MoE kernels than the fused-MoE Triton kernel.
OTHER_KERNELS = {
    "mxfp4": "MXFP4 experts run through vLLM's MXFP4 kernels (Marlin, FlashInfer, triton_kernels)",
    "awq": "int4 experts run through Marlin or vLLM's moe_wna16 kernel",
    "awq_marlin": "int4 experts run through Marlin",
    "gptq": "int4 experts run through Marlin or vLLM's moe_wna16 kernel",
    "gptq_marlin": "int4 experts run through Marlin",
    "auto-round": "int4 experts run through Marlin or vLLM's moe_wna16 kernel",
    "bitsandbytes": "bitsandbytes experts run through bitsandbytes' own kernels",
    "gguf": "GGUF experts run through vLLM's GGUF kernels",
    "fbgemm_fp8": "per-channel fp8 weights with per-token activations, which this tuner's kernel "
                  "does not time (it has per-tensor and block scales)",
}
NOT_TUNED = "not tuned here (shape.dtype= tunes another dtype anyway)"

HF_MODEL_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
MODEL_HINT = ("give a Hugging Face model folder, its config.json, or a model id in the local "
              "cache (e.g. Qwen/Qwen3-30B-A3B)")


@dataclass(frozen=True)
class Quantization:
    """What quantization_config says the experts are, for the kernel (or why it cannot)."""

    dtype: Optional[str]  # a shape.dtype; None when `refusal` says why not
    block_shape: Optional[list[int]]
    source: str  # what was read, for dry_run
    refusal: Optional[str] = None


@dataclass(frozen=True)
class ModelConfig:
    """The config.json a shape was read from, and what was read where (dry_run prints it)."""

    path: Path
    architecture: str
    read: tuple[str, ...]

    def describe(self) -> list[str]:
        return [f"model      {self.path} ({self.architecture})"] + [
            f"read       {line}" for line in self.read]


def read_shape_config(cfg: ShapeConfig) -> tuple[ShapeConfig, ModelConfig]:
    """shape=hf: `cfg` with each MoE field left null read from shape.model's config.json.

    Fields given (shape.experts=, shape.dtype=, ...) are kept: they override the file.
    """
    path = config_path(cfg.model)
    top = load_config(path)
    text = top.get("text_config") if isinstance(top.get("text_config"), dict) else top
    prefix = "text_config." if text is not top else ""
    architecture = _architecture(top, text, path)
    where = path.name
    read: list[str] = []
    sizes: dict[str, int] = {}

    missing = [key for key in SIZE_KEYS if getattr(cfg, key) is None]
    family = ARCHITECTURES.get(architecture)
    if missing and family is None:
        if any(_lookup(text, f) for f in EXPERT_FIELDS):
            raise UserError(
                f"{path}: architecture {architecture} is not one autotune knows how vLLM reads "
                f"(known: {', '.join(sorted(ARCHITECTURES))}); give its MoE layer as "
                + " ".join(f"shape.{key}=" for key in missing))
        raise _dense(path, architecture)
    for key in SIZE_KEYS:
        given = getattr(cfg, key)
        if given is not None:
            read.append(f"shape.{key}={given} (given)")
            continue
        field = getattr(family, key)
        value = _lookup(text, field)
        if key == "experts" and (value is None or _is_int(value) and value < family.min_experts):
            raise _dense(path, architecture, f"{prefix}{field}={json.dumps(value)}")
        sizes[key] = _integer(value, f"{prefix}{field}", path, architecture, key)
        read.append(f"{where}: {prefix}{field}={value} -> {key}")

    quant = read_quantization(top, text, path)
    if cfg.dtype is None:
        if quant.refusal:
            raise UserError(f"{path}: {quant.refusal}")
        dtype = quant.dtype
        read.append(f"{where}: {quant.source} -> {_kernel_format(dtype, quant.block_shape)}")
    else:
        dtype = cfg.dtype
        read.append(f"shape.dtype={dtype} (given; {where} has {quant.source})")
    # The block belongs to the config's dtype: a dtype given in its place takes shape.block_shape.
    block = cfg.block_shape
    if block is None and dtype == quant.dtype:
        block = quant.block_shape
    return replace(cfg, dtype=dtype, block_shape=block, **sizes), ModelConfig(
        path=path, architecture=architecture, read=tuple(read))


def read_quantization(top: dict, text: dict, path: Path) -> Quantization:
    """The experts' format from quantization_config, where vLLM looks for it: the top level, the
    text config, compression_config, then a ModelOpt hf_quant_config.json beside config.json."""
    quant = top.get("quantization_config") or text.get("quantization_config") \
        or top.get("compression_config")
    if not quant:
        modelopt = path.with_name("hf_quant_config.json")
        if modelopt.is_file():
            return _modelopt(load_config(modelopt).get("quantization") or {}, modelopt.name)
        return _unquantized(top, text)
    if not isinstance(quant, dict):
        return Quantization(None, None, "quantization_config",
                            f"quantization_config={json.dumps(quant)} is not an object")
    method = str(quant.get("quant_method", "")).lower()
    if method == "fp8":
        return _fp8(quant)
    if method == "compressed-tensors":
        return _compressed_tensors(quant)
    if method == "modelopt":
        return _modelopt(quant, "quantization_config")
    source = f"quantization_config.quant_method={method or 'null'}"
    why = OTHER_KERNELS.get(method)
    if why:
        return Quantization(None, None, source,
                            f"{source}: {why}, not the fused-MoE Triton kernel; {NOT_TUNED}")
    return Quantization(None, None, source,
                        f"{source} is not a format this tuner reads (fp8, compressed-tensors fp8, "
                        f"modelopt FP8, or no quantization_config); {NOT_TUNED}")


def _unquantized(top: dict, text: dict) -> Quantization:
    scopes = [("", top)] + ([("text_config.", text)] if text is not top else [])
    for name, scope in scopes:
        for key in ("dtype", "torch_dtype"):  # newer transformers write "dtype"
            value = scope.get(key)
            if value is not None:
                source = f"{name}{key}={value}"
                if value not in TORCH_DTYPES:
                    return Quantization(None, None, source,
                                        f"{source} is not one of {', '.join(TORCH_DTYPES)}; "
                                        f"set shape.dtype=")
                return Quantization(TORCH_DTYPES[value], None, f"{source}, no quantization_config")
    # Hugging Face's default is float32, which vLLM runs in bf16.
    return Quantization("bf16", None, "no dtype, no quantization_config")


def _fp8(quant: dict) -> Quantization:
    block = quant.get("weight_block_size")
    if block is None:
        return Quantization("fp8_w8a8", None, "quantization_config.quant_method=fp8 (per-tensor)")
    source = f"quantization_config.quant_method=fp8 weight_block_size={json.dumps(block)}"
    if not _is_block(block):
        return Quantization(None, None, source,
                            f"{source}: a block is two positive sizes [block_n, block_k]")
    if quant.get("activation_scheme", "dynamic") != "dynamic":
        # vLLM's Fp8Config refuses block quantization with static activation scales.
        return Quantization(None, None, source,
                            f"{source} with activation_scheme={quant['activation_scheme']}: vLLM "
                            f"runs block-wise fp8 with dynamic activations only")
    return Quantization("fp8_w8a8", list(block), source)


def _compressed_tensors(quant: dict) -> Quantization:
    groups = quant.get("config_groups")
    source = "quantization_config.quant_method=compressed-tensors"
    if not isinstance(groups, dict) or len(groups) != 1:
        count = len(groups) if isinstance(groups, dict) else 0
        return Quantization(None, None, source,
                            f"{source} with {count} config_groups: this tuner reads one scheme "
                            f"for all experts; {NOT_TUNED}")
    weights = (next(iter(groups.values())) or {}).get("weights") or {}
    kind, bits, strategy = weights.get("type"), weights.get("num_bits"), weights.get("strategy")
    source += f" weights: {kind} {bits}-bit {strategy}"
    if kind == "float" and bits == 8 and strategy == "block":
        block = weights.get("block_structure")
        if _is_block(block):
            return Quantization("fp8_w8a8", list(block), f"{source} {json.dumps(block)}")
        return Quantization(None, None, source,
                            f"{source}: block_structure={json.dumps(block)} is not [block_n, "
                            f"block_k]")
    if kind == "float" and bits == 8 and strategy == "tensor":
        return Quantization("fp8_w8a8", None, source)
    if kind == "float" and bits == 8:
        why = (f"{strategy} fp8 scales, which this tuner's kernel does not time (it has "
               f"per-tensor and block scales)")
    elif kind == "float" and bits == 4:
        why = "FP4 experts run through vLLM's FP4 kernels (FlashInfer, CUTLASS, Marlin)"
    elif kind == "int" and bits == 4:
        why = "int4 experts run through Marlin or vLLM's moe_wna16 kernel"
    elif kind == "int" and bits == 8:
        why = ("int8 weights and activations (int8_w8a8), which this tuner's kernel does not "
               "implement")
    else:
        why = "a scheme this tuner's kernel does not implement"
    return Quantization(None, None, source, f"{source}: {why}; {NOT_TUNED}")


def _modelopt(quant: dict, where: str) -> Quantization:
    algo = str(quant.get("quant_algo", "")).upper()
    source = f"{where} quant_algo={algo or 'null'}"
    if algo == "FP8":  # per-tensor weight and activation scales
        return Quantization("fp8_w8a8", None, f"{source} (per-tensor)")
    why = ("FP4 experts run through vLLM's FP4 kernels (FlashInfer, CUTLASS, Marlin)"
           if "FP4" in algo else "a scheme this tuner's kernel does not implement")
    return Quantization(None, None, source, f"ModelOpt {source}: {why}; {NOT_TUNED}")


# -- finding and reading the file ------------------------------------------------------------

def config_path(model: str) -> Path:
    """shape.model as a config.json: the file, a model folder, or a model id in the local Hugging
    Face cache (never downloaded)."""
    if not model:
        raise UserError(f"shape=hf needs the model: shape.model=PATH; {MODEL_HINT}")
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"shape.model={model}: the folder has no config.json; {MODEL_HINT}")
        return path / "config.json"
    if path.is_file():
        return path
    if HF_MODEL_ID.fullmatch(model):
        return _cached_config(model)
    raise UserError(f"shape.model={model}: no such file or folder; {MODEL_HINT}")


def hub_cache() -> Path:
    """The Hugging Face hub cache, as huggingface_hub finds it."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _cached_config(model_id: str) -> Path:
    cache = hub_cache()
    repo = cache / ("models--" + model_id.replace("/", "--"))
    fetch = f"huggingface-cli download {model_id} config.json"
    if not repo.is_dir():
        raise UserError(f"shape.model={model_id}: not a file or folder, and not in the local "
                        f"Hugging Face cache {cache} (HF_HUB_CACHE, HF_HOME); fetch it first "
                        f"({fetch}) or give its folder")
    ref = repo / "refs" / "main"
    if ref.is_file():
        snapshot = repo / "snapshots" / ref.read_text().strip() / "config.json"
        if snapshot.is_file():
            return snapshot
    snapshots = sorted((repo / "snapshots").glob("*/config.json"))
    if len(snapshots) == 1:
        return snapshots[0]
    if not snapshots:
        raise UserError(f"shape.model={model_id}: the cache {repo} holds no config.json; fetch "
                        f"it ({fetch})")
    raise UserError(f"shape.model={model_id}: the cache holds {len(snapshots)} revisions and no "
                    f"refs/main; give the snapshot folder, e.g. {snapshots[-1].parent}")


def load_config(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc}); give a readable "
                        f"config.json") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON (line {exc.lineno} column {exc.colno}: "
                        f"{exc.msg}); give the model's config.json") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} holds a JSON {type(data).__name__}, not a model config object")
    return data


def _architecture(top: dict, text: dict, path: Path) -> str:
    for scope in (top, text):
        names = scope.get("architectures")
        if isinstance(names, list) and names and isinstance(names[0], str):
            return names[0]
    raise UserError(f"{path} has no architectures list (e.g. \"architectures\": "
                    f"[\"Qwen3MoeForCausalLM\"]), which vLLM reads to pick the model code")


def _lookup(scope: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        scope = scope.get(part) if isinstance(scope, dict) else None
    return scope


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_block(value: Any) -> bool:
    """[block_n, block_k]: two positive integers."""
    return isinstance(value, list) and len(value) == 2 and all(_is_int(b) and b > 0 for b in value)


def _integer(value: Any, field: str, path: Path, architecture: str, key: str) -> int:
    if value is None:
        raise UserError(f"{path} has no {field}, which vLLM's {architecture} reads for the MoE "
                        f"layer; give shape.{key}=")
    if not _is_int(value) or value < 1:
        raise UserError(f"{path}: {field}={json.dumps(value)} is not a positive integer; "
                        f"give shape.{key}=")
    return value


def _dense(path: Path, architecture: str, holds: str = "") -> UserError:
    holds = holds or "none of " + ", ".join(EXPERT_FIELDS)
    return UserError(f"{path} ({architecture}) has no routed experts ({holds}): a dense model has "
                     f"no fused-MoE layer to tune")


def _kernel_format(dtype: Optional[str], block: Optional[list[int]]) -> str:
    return f"{dtype} block [{block[0]},{block[1]}]" if block else str(dtype)
