"""End to end on recorded GPU tables: a valid vLLM file, and resumption that loses nothing."""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna

from autotune.formats import check_file
from tests.conftest import GRIDS, replay_args

FILE = "E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"


def measured(db: Path) -> dict[str, list[tuple[int, str]]]:
    """Per study: (trial number, config) of every measured trial, from the storage itself."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    out = {}
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        out[summary.study_name] = [
            (t.number, json.dumps(t.user_attrs["config"], sort_keys=True))
            for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get("measured")]
    return out


def test_replay_run_writes_a_valid_vllm_file_from_the_best_trials(tmp_path, replay_cli):
    result = replay_cli("trials=12")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "configs" / FILE
    assert check_file(path) == []
    text = path.read_text()
    data = json.loads(text)
    assert list(data) == ["triton_version", "1", "16", "64", "256", "4096"]
    assert data["triton_version"] == "3.6.0"
    assert text.endswith("}\n") and '\n    "1": {\n        "BLOCK_SIZE_M"' in text
    # Each entry is the fastest measured config of its study, per the recorded table.
    studies = measured(tmp_path / "studies.db")
    assert len(studies) == 5 and all(len(t) == 12 for t in studies.values())
    for name in studies:
        M = int(name.rsplit("M=", 1)[1])
        table = json.loads((GRIDS / f"NVIDIA_H200_E256_N512_K2048_fp8block_M{M}.json").read_text())
        times = {json.dumps(r["config"], sort_keys=True): r["us"] for r in table["results"]}
        best = min((times[c] for _, c in studies[name] if times[c] is not None))
        assert times[json.dumps(data[str(M)], sort_keys=True)] == best


def test_rerun_with_a_larger_budget_keeps_the_trials_and_adds_to_them(tmp_path, replay_cli):
    assert replay_cli("trials=6").returncode == 0
    first = measured(tmp_path / "studies.db")
    result = replay_cli("trials=10")
    assert result.returncode == 0, result.stderr
    second = measured(tmp_path / "studies.db")
    for name, trials in first.items():
        assert second[name][:6] == trials
        assert len(second[name]) == 10
    assert "10 measured (4 new)" in result.stdout


def test_killed_run_resumes_without_losing_or_repeating_finished_trials(tmp_path):
    db = tmp_path / "studies.db"
    args = [sys.executable, "-m", "autotune",
            *replay_args(tmp_path, "trials=40", "patience=null")]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        if db.exists() and _count_measured(db) >= 15:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = measured(db)
    assert sum(map(len, before.values())) < 200, "the run finished before it could be killed"

    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    after = measured(db)
    for name, trials in after.items():
        assert after[name][:len(before.get(name, []))] == before.get(name, [])  # nothing lost
        configs = [c for _, c in trials]
        assert len(configs) == 40 and len(set(configs)) == 40  # none measured twice
    assert check_file(tmp_path / "configs" / FILE) == []


def _count_measured(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM trial_user_attributes "
                               "WHERE key = 'measured'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0
