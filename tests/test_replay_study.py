"""End to end on recorded GPU tables: a valid vLLM file, and resumption that loses nothing."""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna

from autotune.files.check import check_file
from tests.conftest import GRIDS, bound, replay_args

FILE = "E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"


def measured(db: Path) -> dict[str, list[tuple[int, str]]]:
    """Per study: (trial number, config) of every measured trial (timed fully, or looked at and
    pruned), from the storage itself."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    out = {}
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        out[summary.study_name] = [
            (t.number, json.dumps(t.user_attrs["config"], sort_keys=True))
            for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,
                                              optuna.trial.TrialState.PRUNED))
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
    deadline = time.time() + bound(120)
    while time.time() < deadline:
        time.sleep(0.2)
        if db.exists() and _count_measured(db) >= 15:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = measured(db)
    assert sum(map(len, before.values())) < 200, "the run finished before it could be killed"

    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=bound(300))
    assert result.returncode == 0, result.stderr
    after = measured(db)
    for name, trials in after.items():
        assert after[name][:len(before.get(name, []))] == before.get(name, [])  # nothing lost
        configs = [c for _, c in trials]
        assert len(configs) == 40 and len(set(configs)) == 40  # none measured twice
    assert check_file(tmp_path / "configs" / FILE) == []


def _count_measured(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=bound(1))
        try:
            return con.execute("SELECT COUNT(*) FROM trial_user_attributes "
                               "WHERE key = 'measured'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_the_summary_shows_each_entry_written_with_its_re_timed_time(tmp_path, replay_cli):
    result = replay_cli("trials=8")
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "configs" / FILE).read_text())
    report = json.loads((tmp_path / "configs" / FILE.replace(".json", ".report") /
                         "report.json").read_text())
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("M=")]
    assert len(lines) == 5
    for line, bucket in zip(lines, report["buckets"]):
        entry = {k: written[str(bucket["M"])][k] for k in written[str(bucket["M"])]}
        assert line.startswith(f"M={bucket['M']:<5d}   8 measured (8 new)  "
                               f"{bucket['tuned_us']:9.2f} us  {entry}  (re-timed; ")


def test_after_ctrl_c_the_summary_counts_what_this_run_measured(tmp_path):
    db = tmp_path / "studies.db"
    proc = subprocess.Popen([sys.executable, "-m", "autotune",
                             *replay_args(tmp_path, "trials=300", "patience=null",
                                          "buckets=[16]")],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + bound(120)
    while _count_measured(db) < 5 and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=bound(120))
    assert proc.returncode == 130, err
    n = sum(map(len, measured(db).values()))  # a fresh storage: every one is this run's
    assert 5 <= n < 300
    assert f"M=16    {n:3d} measured ({n} new)  " in out


def test_a_run_that_writes_no_file_exits_non_zero_and_says_why(tmp_path):
    table = json.loads((GRIDS / "NVIDIA_H200_E256_N512_K2048_fp8block_M1.json").read_text())
    for row in table["results"]:  # every config failed when recorded
        row["us"], row["error"] = None, "out of resources"
    (tmp_path / "M1.json").write_text(json.dumps(table))
    args = [a for a in replay_args(tmp_path, "trials=3") if not a.startswith("benchmark.tables")]
    result = subprocess.run([sys.executable, "-m", "autotune", *args,
                             f"benchmark.tables=[{tmp_path / 'M1.json'}]"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=bound(300))
    assert result.returncode == 1
    assert "M=1       3 measured (3 new)  no feasible config" in result.stdout
    assert result.stderr.strip().splitlines() == [
        "autotune: error: no config file was written: no bucket has a config that ran and passed "
        f"the correctness check: see {tmp_path / 'configs' / FILE.replace('.json', '.report')}"
        "/report.md"]  # and no warning from the plots
    assert not (tmp_path / "configs" / FILE).exists()
