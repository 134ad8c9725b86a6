"""Shared fixtures: the recorded tables, composing the real Hydra config, running the CLI."""

from __future__ import annotations

import os

# Kernels run under the Triton interpreter unless the suite is started with TRITON_INTERPRET=0 on
# a GPU machine. @triton.jit reads this when a kernel module is imported, so it is set here,
# before any test module imports autotune.
os.environ.setdefault("TRITON_INTERPRET", "1")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

DATA = Path(__file__).parent / "data"
GRIDS = DATA / "grids"  # vLLM's kernel on an H200: Qwen3.5-35B-A3B-FP8 TP1, M = 1..4096
VLLM_CONFIGS = DATA / "vllm_configs"  # vLLM 0.33.0's shipped config files, byte for byte
# All 260 NVIDIA files of vLLM 0.33.0's fused_moe/configs/, byte for byte, and the names of its 78
# others (AMD, Intel: files for GPUs whose platforms this project does not tune), one a line.
VLLM_CONFIGS_ALL = DATA / "vllm_configs_all"
VLLM_OTHER_NAMES = DATA / "vllm_configs_other_names.txt"

# The files of that corpus vLLM never reads: dtype tokens _get_config_dtype_str never gives.
NEVER_READ = {
    "E=128,N=8960,device_name=NVIDIA_H100_80GB_HBM3,dtype=bf16.json",
    "E=64,N=8960,device_name=NVIDIA_H100_80GB_HBM3,dtype=bf16.json",
    "E=16,N=3072,device_name=NVIDIA_H100_80GB_HBM3,dtype=float8.json",
    "E=16,N=7168,device_name=NVIDIA_H100_80GB_HBM3,dtype=float8.json",
    "E=256,N=128,device_name=NVIDIA_A100-SXM4-80GB,dtype=int8_w8a8.json",
    "E=256,N=128,device_name=NVIDIA_A100-SXM4-80GB,dtype=int8_w8a8,block_shape=[128,128].json",
    "E=256,N=128,device_name=NVIDIA_A800-SXM4-80GB,dtype=int8_w8a8.json",
    "E=256,N=128,device_name=NVIDIA_A800-SXM4-80GB,dtype=int8_w8a8,block_shape=[128,128].json",
    "E=256,N=256,device_name=NVIDIA_H20,dtype=int8_w8a8,block_shape=[128,128].json",
}


def bound(seconds: float) -> float:
    """A time bound on waiting for real processes, scaled by this machine's load when the wait
    starts: beside other work on a 2-core machine, a run takes several times as long."""
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    return seconds * max(1.0, load)


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
                          capture_output=True, text=True, timeout=bound(timeout))


def replay_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["shape=qwen35_tp1", "device=h200", "benchmark=replay",
            f"benchmark.tables=[{GRIDS}]", f"storage=sqlite:///{tmp_path / 'studies.db'}",
            f"output_dir={tmp_path / 'configs'}", "progress=false", *extra]


@pytest.fixture
def replay_cli(tmp_path):
    def run(*extra: str, **kw):
        return run_cli(*replay_args(tmp_path, *extra), cwd=tmp_path, **kw)
    return run


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of its own (tmpfs), to fill or make read-only; needs root."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server: $AUTOTUNE_TEST_POSTGRES (.ci/run starts one), or one started
    here from Debian's package. CI must have it; elsewhere the tests skip without it."""
    url = os.environ.get("AUTOTUNE_TEST_POSTGRES")
    if url:
        yield url
        return
    import shutil
    import tempfile

    if os.geteuid() != 0 and not shutil.which("initdb"):
        if os.environ.get("CI"):
            pytest.fail("CI needs PostgreSQL: .ci/run sets AUTOTUNE_TEST_POSTGRES")
        pytest.skip("no PostgreSQL server (set AUTOTUNE_TEST_POSTGRES or install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="autotune-pg-"))
    folder.chmod(0o755)  # the server runs as the postgres user
    url = subprocess.run(["bash", str(ROOT / ".ci" / "start-postgres"), str(folder / "pg"),
                          str(_free_port())], check=True, capture_output=True,
                         text=True).stdout.strip()
    yield url
    pg_ctl = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    cmd = [str(pg_ctl[-1] if pg_ctl else "pg_ctl"), "-D", str(folder / "pg" / "data"), "-m",
           "immediate", "stop"]
    subprocess.run((["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + cmd,
                   capture_output=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the test server (dropped afterwards)."""
    import uuid

    import psycopg

    name = f"autotune_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def optuna_storage(url: str):
    """The storage read with Optuna alone (not through autotune's code under test)."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url[len("journal:"):]))
    from autotune.study.storage import with_installed_driver

    return optuna.storages.RDBStorage(with_installed_driver(url))


def trials_by_study(url: str) -> dict:
    """{study name: every FrozenTrial}, straight from the storage."""
    storage = optuna_storage(url)
    out = {}
    for s in storage.get_all_studies():
        out[s.study_name] = storage.get_all_trials(s._study_id, deepcopy=False)
    return out


def measured_trials(url: str) -> dict:
    """{study name: {trial number: (config json, us)}} of the measured (finished) trials: timed
    fully, or looked at and pruned (us: the look's)."""
    import json

    from optuna.trial import TrialState

    return {name: {t.number: (json.dumps(t.user_attrs["config"], sort_keys=True),
                              t.user_attrs.get("us"))
                   for t in trials
                   if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                   and t.user_attrs.get("measured")}
            for name, trials in trials_by_study(url).items()}


def storage_args(tmp_path: Path, storage: str, *extra: str) -> list[str]:
    """replay_args with another storage= URL, and no patience: every study spends its budget."""
    return [a for a in replay_args(tmp_path) if not a.startswith("storage=")] + [
        f"storage={storage}", "patience=null", *extra]


# -- what runs sharing a storage must leave (test_concurrency, test_scaleout, test_reliability) ----
FILE = "E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"


def table_times(M):
    table = json.loads((GRIDS / f"NVIDIA_H200_E256_N512_K2048_fp8block_M{M}.json").read_text())
    return {json.dumps(r["config"], sort_keys=True): r["us"] for r in table["results"]}


def assert_complete_and_unrepeated(url, trials_per_study, studies):
    from optuna.trial import TrialState

    all_trials = trials_by_study(url)
    assert len(all_trials) == studies
    for name, trials in all_trials.items():
        assert not [t.number for t in trials if t.state == TrialState.RUNNING], name
        # timed fully, or only looked at and pruned (pruner=screen): each spends the budget
        measured = [json.dumps(t.user_attrs["config"], sort_keys=True) for t in trials
                    if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                    and t.user_attrs.get("measured")]
        assert len(measured) == trials_per_study, name  # the budget, not more
        assert len(set(measured)) == len(measured), name  # no config measured twice


def expected_entries(url):
    """What a run writes for the trials the storage holds, by the rule the file follows
    (computed here from the recorded tables, not by the code under test): per settled bucket, the
    fastest of its measured configs that the kernel runs as written, and vLLM's default (of
    GROUP_SIZE_M variants as fast, the smallest)."""
    from optuna.trial import TrialState

    from autotune.files.check import check_entry
    from autotune.problem import vllm_rules

    entries = {}
    for name, trials in trials_by_study(url).items():
        M = int(name.rsplit("M=", 1)[1])
        settled = optuna_study_attrs(url, name).get("consolidation")
        if not settled:
            continue
        times = table_times(M)
        default = vllm_rules.default_config(M, 256, "fp8_w8a8", (128, 128))
        candidates = [json.dumps(t.user_attrs["config"], sort_keys=True) for t in trials
                      if t.state == TrialState.COMPLETE and t.user_attrs.get("measured")
                      and t.user_attrs.get("us") is not None
                      and not check_entry(str(M), t.user_attrs["config"], (128, 128))]
        candidates.append(json.dumps(default, sort_keys=True))
        timed = [json.loads(c) for c in candidates if times.get(c) is not None]
        entries[M] = replay_pick(timed, lambda c, times=times: times[json.dumps(c, sort_keys=True)])
    return entries


def replay_pick(configs, us):
    """The entry written from these configs timed by `us` in replay (no spread): the fastest, or
    of its GROUP_SIZE_M variants as fast, the smallest."""
    fastest = min(configs, key=us)
    variants = [c for c in configs if us(c) == us(fastest) and all(
        c[k] == fastest[k] for k in fastest if k != "GROUP_SIZE_M")]
    return min(variants, key=lambda c: c["GROUP_SIZE_M"])


def optuna_study_attrs(url, name):
    storage = optuna_storage(url)
    return next(s.user_attrs for s in storage.get_all_studies() if s.study_name == name)


def assert_file_holds_the_best_of_the_storage(tmp_path, url):
    from autotune.files.check import check_file
    from autotune.files.vllm import read_entries

    path = tmp_path / "configs" / FILE
    assert check_file(path) == []
    assert read_entries(path) == expected_entries(url)


# The vllm search space (search_spaces/vllm.yaml), as a schema object for tests that build spaces.
def _vllm_space():
    from autotune.config import SearchSpaceConfig

    return SearchSpaceConfig(name="vllm", params={
        "BLOCK_SIZE_M": [16, 32, 64, 128, 256], "BLOCK_SIZE_N": [32, 64, 128, 256],
        "BLOCK_SIZE_K": [64, 128, 256], "GROUP_SIZE_M": [1, 16, 32, 64], "num_warps": [4, 8],
        "num_stages": [2, 3, 4, 5]}, constraints=["block_quant", "shared_memory"])


VLLM = _vllm_space()
