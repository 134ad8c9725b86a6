"""How well the prior ranks a GPU's shipped winners when it has never seen that GPU.

For each GPU with vLLM files in autotune/vllm_configs (H100, H200, RTX PRO 6000): every source of
that GPU (its shipped files and recorded tables) is left out of the prior, and for each entry of
each of its files the prior of the file's shape and bucket ranks the space (the vllm search space
on that GPU's preset: its shared-memory limit, from a compiled table where one ships). Reported:
the entry's rank (exact config) and its tile's rank (any GROUP_SIZE_M), their median, and the
share in the top 5 and top 20. Then, for the RTX PRO 6000 space, how the prior's first trials
change when the compiled sm_120 table replaces the shared-memory estimate.

    PYTHONPATH=. python benchmarks/prior/leave_one_gpu_out.py > benchmarks/prior/leave_one_gpu_out.md
"""

import statistics
from pathlib import Path

from omegaconf import OmegaConf

from autotune.config import SearchSpaceConfig, ShapeConfig
from autotune.files.device_fit import load_device_preset
from autotune.files.names import device_token
from autotune.search.prior import ShippedFile, bundled_files_dir, load_prior_sources, nearest_config, rank_configs
from autotune.problem.resources import load_table
from autotune.problem.shape import MoEShape
from autotune.problem.space import SearchSpace

ROOT = Path(__file__).resolve().parents[2]
PRESETS = {"NVIDIA_H100_80GB_HBM3": "h100", "NVIDIA_H200": "h200",
           "NVIDIA_RTX_PRO_6000_Blackwell_Server_Edition": "rtxpro6000"}
TILE = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "num_warps", "num_stages")
VLLM = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SearchSpaceConfig),
                                           OmegaConf.load(ROOT / "search_spaces" / "vllm.yaml")))


def space_for(f: ShippedFile, preset: str, *, compiled: bool = True) -> SearchSpace:
    device = load_device_preset(preset)
    dtype = f.dtype or "bf16"
    # K (hidden size) is not in a file name; the vllm space's constraints do not depend on it.
    shape = MoEShape.from_config(ShapeConfig(model=f.path.stem, experts=f.E, hidden_size=4096,
                                             intermediate_size=f.N, topk=8, dtype=dtype,
                                             block_shape=list(f.block_shape) if f.block_shape else None))
    table = load_table(device.compute_capability, dtype, f.block_shape) if compiled else None
    return SearchSpace.from_config(VLLM, shape, device.shared_memory_per_block, table)


def quant(f: ShippedFile) -> str:
    return (f.dtype or "bf16") + (" block {}x{}".format(*f.block_shape) if f.block_shape else "")


def ranks(space, sources, device_name, M, entry):
    order = rank_configs(space, sources, device_name, M)
    target = nearest_config(space, entry)
    exact = next(i for i, c in enumerate(order, 1) if c == target)
    tile = next(i for i, c in enumerate(order, 1) if all(c[k] == target[k] for k in TILE))
    return exact, tile


def summary(values):
    return (f"median {statistics.median(values):g}, top 5 {sum(v <= 5 for v in values) / len(values):.0%}, "
            f"top 20 {sum(v <= 20 for v in values) / len(values):.0%}")


def main() -> None:
    sources = load_prior_sources(None, "both")
    print("| GPU left out | dtype | files | entries | configs in its spaces | exact config rank "
          "| tile rank (any GROUP_SIZE_M) |")
    print("|---|---|---|---|---|---|---|")
    for token, preset in PRESETS.items():
        device = load_device_preset(preset)
        others = [s for s in sources if s.device != token]
        files = [ShippedFile.load(p) for p in sorted(bundled_files_dir().glob("*.json"))
                 if f"device_name={token}," in p.name or p.name.endswith(f"device_name={token}.json")]
        for kind in sorted({quant(f) for f in files}):
            exact, tile, sizes = [], [], []
            group = [f for f in files if quant(f) == kind]
            for f in group:
                space = space_for(f, preset)
                sizes.append(space.size())
                for M, entry in f.entries.items():
                    e, t = ranks(space, others, device.name, M, entry)
                    exact.append(e)
                    tile.append(t)
            print(f"| {device.name} | {kind} | {len(group)} | {len(exact)} | "
                  f"{min(sizes)}-{max(sizes)} | {summary(exact)} | {summary(tile)} |")
    print()
    rtx = [ShippedFile.load(p) for p in sorted(bundled_files_dir().glob("*RTX_PRO_6000*.json"))][0]
    device = load_device_preset("rtxpro6000")
    others = [s for s in sources if s.device != device_token(device.name)]
    est, real = space_for(rtx, "rtxpro6000", compiled=False), space_for(rtx, "rtxpro6000")
    print(f"RTX PRO 6000, {rtx.path.name}: the space has {est.size()} configs with the "
          f"shared-memory estimate, {real.size()} with the compiled sm_120 table.")
    print()
    print("| M | prior's top 20 with the estimate: dropped by the table | top 20 with the table: new |")
    print("|---|---|---|")
    for M in (1, 16, 64, 256, 1024, 4096):
        a = rank_configs(est, others, device.name, M)[:20]
        b = rank_configs(real, others, device.name, M)[:20]
        dropped = sum(real.violation(c) is not None for c in a)
        new = sum(c not in a for c in b)
        print(f"| {M} | {dropped} | {new} |")


if __name__ == "__main__":
    main()
