"""Scale out: `workers=N` processes sharing one run's studies, and Hydra's submitit launcher.

On this CPU machine the workers measure with the replay benchmarker; on a GPU host each would be
pinned to one GPU (gpu_pins), which is checked here from CUDA_VISIBLE_DEVICES.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState

from autotune.errors import UserError
from autotune.plan import build_plan
from autotune.run.workers import gpu_pins
from autotune.study.storage import check_parallel_safe
from tests.conftest import (
    assert_complete_and_unrepeated,
    assert_file_holds_the_best_of_the_storage,
    bound,
    compose,
    measured_trials,
    storage_args,
    trials_by_study,
)


@pytest.fixture(params=["journal", "postgresql"])
def storage_url(request, tmp_path):
    if request.param == "journal":
        return f"journal:{tmp_path / 'studies.journal'}"
    return request.getfixturevalue("postgres_url")


def cli(tmp_path, url, *extra, **kw):
    args = storage_args(tmp_path, url, *extra)
    return subprocess.Popen([sys.executable, "-m", "autotune", *args],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


def owners(url, measured_only=True):
    return {t.user_attrs["worker"]["pid"] for ts in trials_by_study(url).values() for t in ts
            if "worker" in t.user_attrs and (t.user_attrs.get("measured") or not measured_only)}


def wait_for(predicate, timeout=None):
    deadline = time.time() + (timeout or bound(120))
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # the storage is still being created
            pass
        time.sleep(0.3)
    return False


def test_two_workers_share_the_buckets_and_write_one_file(tmp_path, storage_url):
    run = cli(tmp_path, storage_url, "trials=20", "workers=2")
    out, err = run.communicate(timeout=bound(600))
    assert run.returncode == 0, err
    assert_complete_and_unrepeated(storage_url, 20, 5)
    assert_file_holds_the_best_of_the_storage(tmp_path, storage_url)
    assert len(owners(storage_url)) == 2  # both worker processes measured
    assert out.count("20 measured (20 new)") == 5


def test_a_worker_killed_mid_study_is_taken_over_by_the_others(tmp_path, storage_url):
    run = cli(tmp_path, storage_url, "trials=40", "buckets=[1,16,64]", "workers=2")
    assert wait_for(lambda: len(owners(storage_url)) == 2), "the workers did not start"
    victim = min(owners(storage_url))
    os.kill(victim, signal.SIGKILL)
    out, err = run.communicate(timeout=bound(600))
    assert run.returncode == 0, err
    assert "was killed by SIGKILL" in err and "Traceback" not in err
    assert_complete_and_unrepeated(storage_url, 40, 3)  # its trial failed, its buckets finished
    assert_file_holds_the_best_of_the_storage(tmp_path, storage_url)


def test_a_run_killed_whole_mid_study_is_completed_by_a_rerun(tmp_path, storage_url):
    run = cli(tmp_path, storage_url, "trials=40", "buckets=[1,16,64]", "workers=2",
              start_new_session=True)
    assert wait_for(lambda: sum(map(len, measured_trials(storage_url).values())) >= 20)
    os.killpg(run.pid, signal.SIGKILL)  # the parent and both workers at once
    run.communicate()
    before = measured_trials(storage_url)
    rerun = cli(tmp_path, storage_url, "trials=40", "buckets=[1,16,64]", "workers=2")
    out, err = rerun.communicate(timeout=bound(600))
    assert rerun.returncode == 0, err
    after = measured_trials(storage_url)
    for name, trials in before.items():  # nothing finished was lost
        assert {n: after[name][n] for n in trials} == trials
    assert_complete_and_unrepeated(storage_url, 40, 3)
    assert_file_holds_the_best_of_the_storage(tmp_path, storage_url)


def test_ctrl_c_stops_every_worker_cleanly_and_writes_what_is_done(tmp_path):
    url = f"journal:{tmp_path / 'studies.journal'}"
    run = cli(tmp_path, url, "trials=60", "workers=2", start_new_session=True)
    assert wait_for(lambda: len(owners(url)) == 2 and
                    max(map(len, measured_trials(url).values())) >= 60)  # a bucket is settled
    os.killpg(run.pid, signal.SIGINT)  # as the terminal sends it: to the whole group
    out, err = run.communicate(timeout=bound(120))
    assert run.returncode == 130, err
    assert "Traceback" not in err
    assert "rerun the same command to resume" in err
    assert not [t for ts in trials_by_study(url).values() for t in ts
                if t.state == TrialState.RUNNING and "worker" in t.user_attrs]
    assert "wrote " in out
    assert_file_holds_the_best_of_the_storage(tmp_path, url)


def test_submitit_local_launcher_runs_jobs_that_share_the_studies(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    url = f"journal:{tmp_path / 'studies.journal'}"
    args = storage_args(tmp_path, url, "trials=12", "buckets=[1,16]", "sampler.seed=1,2",
                        f"hydra.sweep.dir={tmp_path / 'multirun'}")
    result = subprocess.run([sys.executable, "-m", "autotune", "-m",
                             "hydra/launcher=submitit_local", *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=bound(600))
    assert result.returncode == 0, result.stderr
    assert "Submitit 'local' sweep" in result.stdout + result.stderr
    logs = sorted((tmp_path / "multirun" / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2 and all("Job completed successfully" in p.read_text() for p in logs)
    assert_complete_and_unrepeated(url, 12, 2)
    assert_file_holds_the_best_of_the_storage(tmp_path, url)


def test_each_worker_gets_one_visible_gpu_and_too_many_are_refused(monkeypatch):
    plan = build_plan(compose("shape=qwen35_tp1", "device=h100"), probe_gpu=False)
    assert plan.benchmark_kind == "gpu"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gpu_pins(plan, 2) == ["2", "3"]
    with pytest.raises(UserError, match=r"workers=3 but 2 GPU\(s\) are visible \(2, 3\)"):
        gpu_pins(plan, 3)
    replay = build_plan(compose("shape=tiny", "device=cpu"), probe_gpu=False)
    assert gpu_pins(replay, 3) == [None] * 3  # CPU workers: nothing to pin


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://"])
def test_a_storage_in_one_process_memory_is_refused_for_workers(url):
    check_parallel_safe(url, 1)
    with pytest.raises(UserError, match="workers=2 needs a shared one"):
        check_parallel_safe(url, 2)


def test_cpu_workers_are_bounded_by_the_cores(tmp_path):
    cores = len(os.sched_getaffinity(0))
    result = subprocess.run([sys.executable, "-m", "autotune", *storage_args(
        tmp_path, f"journal:{tmp_path / 's.journal'}", "workers=1000")],
        cwd=tmp_path, capture_output=True, text=True, timeout=bound(120))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"autotune: error: workers=1000: this run measures on the CPU, which has {cores} core(s) "
        f"here; use workers={cores} or fewer"]
    assert not (tmp_path / "s.journal").exists()  # refused before anything started


def test_workers_must_be_positive(tmp_path):
    result = subprocess.run([sys.executable, "-m", "autotune", *storage_args(
        tmp_path, f"journal:{tmp_path / 's.journal'}", "workers=0", "dry_run=true")],
        cwd=tmp_path, capture_output=True, text=True, timeout=bound(120))
    assert result.returncode == 2 and "workers=0: must be at least 1" in result.stderr


def test_dry_run_names_the_shared_storage(tmp_path):
    result = subprocess.run([sys.executable, "-m", "autotune", *storage_args(
        tmp_path, f"journal:{tmp_path / 's.journal'}", "workers=2", "dry_run=true")],
        cwd=tmp_path, capture_output=True, text=True, timeout=bound(120))
    assert result.returncode == 0, result.stderr
    assert f"storage    journal:{tmp_path / 's.journal'} (shared by 2 workers)" in result.stdout
    assert not (tmp_path / "s.journal").exists()  # a dry run touches nothing
