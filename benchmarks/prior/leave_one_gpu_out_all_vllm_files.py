"""leave_one_gpu_out.py with every vLLM 0.33.0 NVIDIA file the Triton kernel reads as a source.

The prior's sources become the 244 files of tests/data/vllm_configs_all that vLLM reads for the
Triton fused-MoE kernel (bf16/fp16, fp8_w8a8, int8_w8a16; not FlyDSL, not the never-read names)
plus the bundled recorded tables, instead of the 21 bundled files. Same report otherwise.

    PYTHONPATH=. python benchmarks/prior/leave_one_gpu_out_all_vllm_files.py
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import leave_one_gpu_out as report  # noqa: E402

from autotune.files.names import parse_file_name  # noqa: E402
from autotune.search.prior import RecordedTable, ShippedFile, bundled_tables_dir  # noqa: E402
from autotune.problem.vllm_rules import never_read  # noqa: E402

CORPUS = report.ROOT / "tests" / "data" / "vllm_configs_all"


def sources():
    out = []
    for path in sorted(CORPUS.glob("*.json")):
        d = parse_file_name(path.name)
        if d["backend"] or never_read(d["device"], d["dtype"], d["block_shape"]):
            continue
        if d["dtype"] in (None, "fp8_w8a8", "int8_w8a16"):
            out.append(ShippedFile.load(path))
    return out + [RecordedTable.load(p) for p in sorted(bundled_tables_dir().glob("*.json"))]


if __name__ == "__main__":
    everything = sources()
    report.load_prior_sources = lambda *args, **kwargs: everything
    report.main()
