"""Kernel tests run in one of two modes, decided before Triton is imported:

- interpreter (default here): TRITON_INTERPRET=1, kernels run on the CPU with CPU tensors;
- GPU: run with TRITON_INTERPRET=0 on a CUDA machine; every test then uses CUDA tensors and the
  ``gpu``-marked tests (bf16, realistic shapes) run too.
"""

import os

# Must happen before anything imports triton: @triton.jit reads it when the kernels are defined.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from autotune.kernel.quant import interpreting  # noqa: E402

ON_GPU = not interpreting() and torch.cuda.is_available()
GPU_SKIP_REASON = "needs a CUDA GPU and compiled Triton: " + (
    "TRITON_INTERPRET is set" if interpreting() else "no CUDA device"
)


def pytest_collection_modifyitems(config, items):
    if ON_GPU:
        return
    skip = pytest.mark.skip(reason=GPU_SKIP_REASON)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device() -> str:
    """Where kernels run in this mode: the CPU under the interpreter, else the GPU."""
    if interpreting():
        return "cpu"
    if not torch.cuda.is_available():
        pytest.skip("TRITON_INTERPRET=0 and no CUDA device: nothing can run the kernels")
    return "cuda"
