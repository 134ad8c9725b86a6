"""DeviceSpec: the GPU a result is for, checked against the GPU present when one is used."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from autotune.config import DeviceConfig
from autotune.errors import UserError
from autotune.problem.vllm_rules import config_device


@dataclass(frozen=True)
class DeviceSpec:
    name: str  # as torch reports it; "cpu" for the interpreter
    kind: str  # gpu | cpu
    sm_count: Optional[int] = None
    memory_bandwidth_gbps: Optional[float] = None
    shared_memory_per_block: Optional[int] = None
    compute_capability: Optional[tuple[int, int]] = None
    l2_cache_mb: Optional[float] = None
    uuid: Optional[str] = None  # the GPU's own id (the same under any CUDA_VISIBLE_DEVICES); known
    # only when the GPU present was probed


def resolve_device(cfg: DeviceConfig, *, need_gpu: bool, probe: bool) -> DeviceSpec:
    """The configured device, or the GPU present for device=auto.

    need_gpu: the run measures on a GPU, so it must be there and be the configured one (checked
    only when probe is set; dry runs do not touch the GPU unless the name is unknown).
    """
    if cfg.kind not in ("gpu", "cpu"):
        raise UserError(f"device.kind={cfg.kind}: use gpu or cpu")
    if cfg.kind == "cpu":
        return DeviceSpec(name=cfg.name, kind="cpu")
    if cfg.name == "auto":
        return present_gpu()
    spec = DeviceSpec(
        name=cfg.name, kind="gpu", sm_count=cfg.sm_count,
        memory_bandwidth_gbps=cfg.memory_bandwidth_gbps,
        shared_memory_per_block=cfg.shared_memory_per_block,
        compute_capability=tuple(cfg.compute_capability) if cfg.compute_capability else None,
        l2_cache_mb=cfg.l2_cache_mb,
    )
    if need_gpu and probe:
        present = present_gpu()
        if config_device(present.name) != config_device(spec.name):
            raise UserError(f"device is {spec.name} but the GPU present is {present.name}; "
                            f"pass the matching device= preset or device=auto")
        spec = dataclasses.replace(spec, uuid=present.uuid)
    return spec


def present_gpu() -> DeviceSpec:
    import torch

    if not torch.cuda.is_available():
        raise UserError("no CUDA GPU is present; try shape=tiny device=cpu (a smoke run on "
                        "Triton's interpreter, about a minute), or benchmark=replay "
                        "benchmark.tables=bundled (recorded H200 tables)")
    props = torch.cuda.get_device_properties(0)
    smem = getattr(props, "shared_memory_per_block_optin", None)
    l2 = getattr(props, "L2_cache_size", None)
    return DeviceSpec(
        name=torch.cuda.get_device_name(0), kind="gpu", sm_count=props.multi_processor_count,
        shared_memory_per_block=smem, compute_capability=(props.major, props.minor),
        l2_cache_mb=l2 / 2**20 if l2 else None, uuid=_uuid(props),
    )


def _uuid(props) -> Optional[str]:
    """GPU-<uuid> as nvidia-smi prints it; the PCI address where torch has no uuid."""
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        return f"GPU-{uuid}"
    bus = getattr(props, "pci_bus_id", None)
    if bus is None:
        return None
    return f"PCI-{getattr(props, 'pci_domain_id', 0):04x}:{bus:02x}:{getattr(props, 'pci_device_id', 0):02x}"
