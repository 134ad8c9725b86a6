"""Whether a config file's entries compile and fit on a GPU we may not have: ``autotune.check
--device PRESET``.

Each entry as vLLM runs it (BLOCK_SIZE_K clamped to the quantization block, SWAP_AB where vLLM
sets it on that device) is looked up in the compiled resource table of the preset's architecture
(:mod:`autotune.problem.resources`); an entry the table lacks is compiled for that architecture on the
spot (:mod:`autotune.kernel.targets`, a few seconds each). Findings: an error for an entry that
does not compile there or needs more shared memory than the preset's GPU allows (vLLM's launch
fails), a warning for one that spills registers to local memory.
"""

from __future__ import annotations

from typing import Optional

from omegaconf import OmegaConf

from autotune.config import DeviceConfig, config_root
from autotune.errors import UserError
from autotune.files.check import Finding
from autotune.problem import vllm_rules
from autotune.problem.device import DeviceSpec, resolve_device
from autotune.problem.resources import RESOURCE_KEYS, Compiled, load_table


def load_device_preset(name: str) -> DeviceSpec:
    """A GPU preset of conf/device by its file name (rtxpro6000, b200, ...)."""
    path = config_root() / "device" / f"{name}.yaml"
    known = sorted(p.stem for p in (config_root() / "device").glob("*.yaml")
                   if p.stem not in ("auto", "cpu"))
    if name in ("auto", "cpu") or not path.is_file():
        raise UserError(f"--device {name}: not a GPU preset; known: {', '.join(known)}")
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DeviceConfig),
                                              OmegaConf.load(path)))
    spec = resolve_device(cfg, need_gpu=False, probe=False)
    if spec.compute_capability is None:
        raise UserError(f"--device {name}: its preset has no compute_capability; add one to {path}")
    return spec


class DeviceFit:
    """Compiled resources of entries on one device, from its tables or compiled on the spot."""

    def __init__(self, device: DeviceSpec):
        self.device = device
        self.target = "sm_{}{}".format(*device.compute_capability)
        self._compiled: dict[tuple, Compiled] = {}

    def findings(self, key: str, entry: dict, dtype: Optional[str],
                 block: Optional[tuple[int, int]]) -> list[Finding]:
        """Findings for one well-formed entry of a file with this dtype token and block."""
        dtype = dtype or "bf16"  # a file without a dtype token serves the unquantized model
        runs = vllm_rules.runs_as(entry, block)
        runs["SWAP_AB"] = vllm_rules.swap_ab(runs, dtype, self.device.compute_capability)
        compiled = self._resources(runs, dtype, block)
        reason = compiled.reason_not_run(self.device.shared_memory_per_block, self.target)
        if reason:
            return [Finding("error", key, f"{reason}: vLLM's launch fails on {self.device.name}")]
        if compiled.local:
            return [Finding("warning", key, f"uses {compiled.local} bytes of local memory per "
                                            f"thread compiled for {self.target} ({compiled.registers} "
                                            f"registers: spills)")]
        return []

    def _resources(self, runs: dict, dtype: str, block: Optional[tuple[int, int]]) -> Compiled:
        capability = self.device.compute_capability
        table = None if runs["SWAP_AB"] else load_table(capability, dtype, block)
        found = table.lookup(runs) if table is not None else None
        if found is not None:
            return found
        key = (dtype, block, runs["SWAP_AB"], *(runs[k] for k in RESOURCE_KEYS))
        if key not in self._compiled:
            self._compiled[key] = _compile(runs, dtype, block, capability)
        return self._compiled[key]


def _compile(runs: dict, dtype: str, block: Optional[tuple[int, int]],
             capability: tuple[int, int]) -> Compiled:
    from autotune.kernel.launch import KernelCompileError
    from autotune.kernel.quant import interpreting
    from autotune.kernel.targets import compile_gemms

    if interpreting():
        raise UserError("--device compiles entries its tables lack, which Triton's interpreter "
                        "cannot: unset TRITON_INTERPRET")
    try:
        gemms = compile_gemms(runs, dtype=dtype, block_shape=block, capability=capability)
    except KernelCompileError as exc:
        return Compiled(shared=0, error=str(exc))
    return Compiled.of_gemms([g.as_dict() for g in gemms])
