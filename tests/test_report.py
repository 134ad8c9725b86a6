"""The report of a real replay run: its numbers against the study and the recorded tables, the
outputs beside it (vLLM file, SGLang copy, installed copy), the report made again from the storage
alone, and the studies read by optuna-dashboard."""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from autotune import wall_clock
from autotune.files.check import check_file
from autotune.files.vllm import read_entries
from autotune.problem import vllm_rules
from autotune.problem.space import SearchSpace
from tests.conftest import GRIDS, VLLM_CONFIGS, bound, replay_args, run_cli

FILE = "E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"
SGLANG = "triton_3_6_0/E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128, 128].json"
REPORT = FILE[:-5] + ".report"
BLOCK = (128, 128)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    result = run_cli(*replay_args(tmp, "trials=8", "retime_rounds=2", f"compare_with={VLLM_CONFIGS}",
                                  "sglang=true", f"install_dir={tmp / 'vllm_folder'}"), cwd=tmp)
    assert result.returncode == 0, result.stderr
    return tmp, result


def report_of(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def recorded(M: int) -> dict[tuple, float]:
    data = json.loads((GRIDS / f"NVIDIA_H200_E256_N512_K2048_fp8block_M{M}.json").read_text())
    return {SearchSpace.key(r["config"]): r["us"] for r in data["results"]}


def test_run_writes_the_vllm_file_its_copies_and_the_report_beside_it(run):
    tmp, result = run
    configs = tmp / "configs"
    vllm, sglang, installed = configs / FILE, configs / SGLANG, tmp / "vllm_folder" / FILE
    for path in (vllm, sglang, installed):
        assert f"wrote {path}" in result.stdout
        assert check_file(path) == []  # no error, and no warning either
    assert installed.read_bytes() == vllm.read_bytes()
    assert "triton_version" not in json.loads(sglang.read_text())
    assert read_entries(sglang) == read_entries(vllm)
    assert sorted(p.name for p in (configs / REPORT).iterdir()) == [
        "latency.png", "report.json", "report.md", "speedup.png", "trials.png"]
    for png in ("latency.png", "speedup.png", "trials.png"):
        data = (configs / REPORT / png).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_report_numbers_match_the_study_and_the_recorded_tables(run):
    tmp, _ = run
    report = report_of(tmp / "configs" / REPORT)
    entries = read_entries(tmp / "configs" / FILE)
    shipped = read_entries(VLLM_CONFIGS / FILE)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp / 'studies.db'}")
    assert [b["M"] for b in report["buckets"]] == [1, 16, 64, 256, 4096]
    for b in report["buckets"]:
        M, times = b["M"], recorded(b["M"])
        trials = optuna.load_study(study_name=b["study"], storage=storage).trials
        measured = [t for t in trials if t.user_attrs.get("measured")
                    and t.state == optuna.trial.TrialState.COMPLETE]
        assert b["trials"] == len(measured) and b["trials"] + b["pruned"] == 8  # timed or pruned
        assert b["infeasible"] == sum(1 for t in measured if t.user_attrs.get("us") is None)
        assert b["excluded"] == sum(1 for t in trials if "excluded" in t.user_attrs)
        assert b["pruned"] == sum(1 for t in trials if t.state == optuna.trial.TrialState.PRUNED)
        assert b["history"] == [t.user_attrs.get("us") for t in measured]
        assert b["seconds"] > 0
        # The entry is the file's, timed as the table recorded it (replay re-times exactly).
        assert b["entry"] == entries[M]
        assert b["tuned_us"] == times[SearchSpace.key(entries[M])]
        default = vllm_rules.default_config(M, 256, "fp8_w8a8", BLOCK)
        assert b["default_us"] == times[SearchSpace.key(default)]
        assert b["speedup_vs_default"] == pytest.approx(b["default_us"] / b["tuned_us"])
        assert b["verification"] == "not verified (replay)"
        # The shipped file's entry for M, as the kernel runs it; n/a where the table lacks it.
        file_config = vllm_rules.nearest_entry(shipped, M)
        assert b["file_config"] == file_config
        file_us = times.get(SearchSpace.key(vllm_rules.runs_as(file_config, BLOCK)))
        assert b["file_us"] == file_us
        if file_us is None:
            assert b["file_note"] == "not in the recorded table" and b["speedup_vs_file"] is None
        else:
            assert b["speedup_vs_file"] == pytest.approx(file_us / b["tuned_us"])
    summary = report["summary"]
    assert summary["trials"] + summary["pruned"] == 40 and summary["entries"] == 5


def test_markdown_shows_the_same_numbers_and_says_what_is_missing(run):
    tmp, _ = run
    folder = tmp / "configs" / REPORT
    report, md = report_of(folder), (folder / "report.md").read_text()
    for b in report["buckets"]:
        file = f"{b['file_us']:.2f}" if b["file_us"] else f"n/a ({b['file_note']})"
        assert (f"| {b['M']} | {b['tuned_us']:.2f} | {b['default_us']:.2f} | "
                f"{b['speedup_vs_default']:.2f}x | {file} |") in md
    assert "not verified (replay)" in md
    assert "n/a (not in the recorded table)" in md  # the shipped M=1 entry (BLOCK_SIZE_M=8)
    assert "n/a (no recorded table at M=8)" in md  # the midpoint between 1 and 16
    assert "(written BLOCK_SIZE_K=256)" in md  # shipped entries that run as 128
    assert "![latency per bucket](latency.png)" in md


def test_each_entry_says_its_lead_over_the_next_config_and_ties_are_named(run):
    tmp, _ = run
    folder = tmp / "configs" / REPORT
    report, md = report_of(folder), (folder / "report.md").read_text()
    ties = []
    for b in report["buckets"]:
        entry_key = SearchSpace.key(b["entry"])
        others = [c for c in b["candidates"] if c["us"] is not None
                  and SearchSpace.key(vllm_rules.kernel_config(c["config"])) != entry_key]
        r = b["runner_up"]
        if not others:
            assert r is None
            continue
        best = min(others, key=lambda c: c["us"])
        assert r["us"] == best["us"] and r["lead"] == pytest.approx(best["us"] / b["tuned_us"] - 1)
        assert r["differs"] == [k for k in b["entry"] if best["config"][k] != b["entry"][k]]
        spreads = [b["tuned_spread"] or 0, best.get("spread") or 0]
        assert r["tie"] == (abs(r["lead"]) < max(0.01, *spreads))
        if r["lead"] < 0:  # a faster variant tied, and the smaller GROUP_SIZE_M was written
            assert r["tie"] and r["differs"] == ["GROUP_SIZE_M"]
            assert b["entry"]["GROUP_SIZE_M"] < best["config"]["GROUP_SIZE_M"]
            assert f"{-100 * r['lead']:.1f}% behind" in md
        ties += [b["M"]] if r["tie"] else []
    assert report["summary"]["ties"] == len(ties)
    if ties:
        assert f"**Ties** at M = {', '.join(map(str, ties))}:" in md
    else:
        assert "**Ties**" not in md


def test_report_command_remakes_the_report_from_the_storage_alone(run, tmp_path):
    tmp, _ = run
    result = subprocess.run([sys.executable, "-m", "autotune.report",
                             f"storage={tmp / 'studies.db'}", f"output_dir={tmp_path}"],
                            capture_output=True, text=True, timeout=bound(120))
    assert result.returncode == 0, result.stderr
    again, first = report_of(tmp_path / REPORT), report_of(tmp / "configs" / REPORT)
    again.pop("generated"), first.pop("generated")
    assert again == first
    assert len(list((tmp_path / REPORT).glob("*.png"))) == 3


def test_report_of_two_runs_for_one_file_asks_which(run, tmp_path):
    tmp, _ = run
    db = tmp_path / "studies.db"
    db.write_bytes((tmp / "studies.db").read_bytes())
    second = run_cli(*replay_args(tmp_path, "trials=3", "buckets=[16]", "search_space=small"),
                     cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    from autotune.report.cli import main

    assert main([f"storage={db}", f"output_dir={tmp_path / 'out'}"]) == 2
    assert main([f"storage={db}", f"output_dir={tmp_path / 'out'}", "study=/small-"]) == 0
    assert [b["M"] for b in report_of(tmp_path / "out" / REPORT)["buckets"]] == [16]


@pytest.mark.parametrize("args, words", [
    (["storage=/nowhere/studies.db"], "no such file"),
    (["storage"], "give key=value"),
    (["out=x"], "key one of storage, output_dir, study"),
])
def test_report_command_refuses_bad_input_in_one_line(tmp_path, args, words):
    result = subprocess.run([sys.executable, "-m", "autotune.report", *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=bound(60))
    assert result.returncode == 2 and words in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_report_without_matplotlib_still_writes_markdown_and_json(run, tmp_path, monkeypatch):
    from autotune.report.data import collect
    from autotune.report.write import write_report

    tmp, _ = run
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp / 'studies.db'}")
    names = [s.study_name for s in storage.get_all_studies()]
    write_report(collect(storage, names), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]
    assert "plots not drawn: matplotlib is not installed" in (tmp_path / "report.md").read_text()


def test_studies_are_readable_by_optuna_dashboard(run):
    dashboard = pytest.importorskip("optuna_dashboard")
    tmp, _ = run
    app = dashboard.wsgi(f"sqlite:///{tmp / 'studies.db'}")

    def get(path: str) -> dict:
        status = []
        env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
               "SERVER_NAME": "test", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr}
        body = b"".join(app(env, lambda s, headers, exc_info=None: status.append(s)))
        assert status == ["200 OK"], (path, status, body[:300])
        return json.loads(body)

    summaries = get("/api/studies")["study_summaries"]
    assert len(summaries) == 5
    for s in summaries:
        detail = get(f"/api/studies/{s['study_id']}")
        assert detail["name"] == s["study_name"] and len(detail["trials"]) >= 8
        assert any(a["key"] == "consolidation" for a in detail["user_attrs"])


def test_a_cpu_run_on_the_interpreter_writes_the_file_and_the_report(tmp_path):
    # The real kernel under the Triton interpreter: verified against the reference, timed on CPU.
    result = run_cli("shape=tiny", "device=cpu", "buckets=[1,8]", "trials=2", "finalists=1",
                     "retime_rounds=1", f"storage=sqlite:///{tmp_path / 'studies.db'}",
                     f"output_dir={tmp_path / 'configs'}", "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "configs" / "E=8,N=64,device_name=cpu.json"
    # valid for vLLM but for its device name: no GPU is named cpu
    assert [f.where for f in check_file(path)] == [path.name] and sorted(read_entries(path)) == [1, 8]
    folder = tmp_path / "configs" / "E=8,N=64,device_name=cpu.report"
    report = report_of(folder)
    assert [b["verification"] for b in report["buckets"]] == ["passed", "passed"]
    assert [b["entry"] for b in report["buckets"]] == [read_entries(path)[1], read_entries(path)[8]]
    md = (folder / "report.md").read_text()
    assert "say nothing about GPU speed" in md and "| 4 | 1 |" in md  # the midpoint of 1 and 8
    assert len(list(folder.glob("*.png"))) == 3
    # the search's wait for the measuring process to start is its own figure
    assert re.search(r"search [\d.]+ \(worker start [\d.]+\)", result.stdout)


def test_a_run_prints_its_wall_time_by_phase_and_keeps_it_in_the_report(run):
    tmp, result = run
    line = next(x for x in result.stdout.splitlines() if x.startswith("wall time "))
    total = float(re.match(r"wall time ([\d.]+) s: ", line).group(1))
    phases = dict((m.group(1), float(m.group(2)))
                  for m in re.finditer(r"([a-z-]+) ([\d.]+)",
                                       re.sub(r" \(.*?\)", "", line.split(": ", 1)[1])))
    assert {"start-up", "search", "re-timing", "correctness", "files", "report",
            "other"} <= set(phases)
    assert abs(sum(phases.values()) - total) < 0.1 * len(phases)  # rounding to 0.1 s each
    stored = json.loads((tmp / "configs" / REPORT / "report.json").read_text())["wall_time"]
    assert set(stored) - {"total", *wall_clock.WAITS} <= set(wall_clock.PHASES)
    assert "report" not in stored  # stored before the report was written
    assert stored["total"] <= total
    md = (tmp / "configs" / REPORT / "report.md").read_text()
    assert "## Wall time of the last run" in md and "| start-up |" in md
