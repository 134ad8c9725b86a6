"""Shared fixtures: the recorded tables, composing the real Hydra config, running the CLI."""

from __future__ import annotations

import os

# Kernels run under the Triton interpreter unless the suite is started with TRITON_INTERPRET=0 on
# a GPU machine. @triton.jit reads this when a kernel module is imported, so it is set here,
# before any test module imports autotune.
os.environ.setdefault("TRITON_INTERPRET", "1")

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

DATA = Path(__file__).parent / "data"
GRIDS = DATA / "grids"  # vLLM's kernel on an H200: Qwen3.5-35B-A3B-FP8 TP1, M = 1..4096
VLLM_CONFIGS = DATA / "vllm_configs"  # vLLM 0.33.0's shipped config files, byte for byte


def compose(*overrides: str):
    """The composed config, exactly as `python -m autotune` composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from autotune.config import config_root, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(config_root()), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_object(cfg)


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None):
    """`python -m autotune ARGS` in a fresh process; returns the CompletedProcess."""
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR")
    return subprocess.run([sys.executable, "-m", "autotune", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def replay_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["shape=qwen35_tp1", "device=h200", "benchmark=replay",
            f"benchmark.tables=[{GRIDS}]", f"storage=sqlite:///{tmp_path / 'studies.db'}",
            f"output_dir={tmp_path / 'configs'}", "progress=false", *extra]


@pytest.fixture
def replay_cli(tmp_path):
    def run(*extra: str, **kw):
        return run_cli(*replay_args(tmp_path, *extra), cwd=tmp_path, **kw)
    return run
