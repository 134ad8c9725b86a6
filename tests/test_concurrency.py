"""Several runs on one storage at once (SQLite, journal file, PostgreSQL): every run contributes,
no finished trial is lost, no config is measured twice, no trial of a dead run stays RUNNING."""

import json
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from autotune.files.check import check_file
from autotune.files.vllm import read_entries
from autotune.study.liveness import (
    OWNERLESS_GRACE_S,
    STALE_S,
    fail_dead_trials,
    is_dead,
    owner_stamp,
)
from autotune.study.storage import open_storage
from tests.conftest import GRIDS, measured_trials, optuna_storage, storage_args, trials_by_study

FILE = "E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    if request.param == "journal":
        return f"journal:{tmp_path / 'studies.journal'}"
    return request.getfixturevalue("postgres_url")


def start(tmp_path, url, *extra):
    args = storage_args(tmp_path, url, *extra)
    return subprocess.Popen([sys.executable, "-m", "autotune", *args],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def table_times(M):
    table = json.loads((GRIDS / f"NVIDIA_H200_E256_N512_K2048_fp8block_M{M}.json").read_text())
    return {json.dumps(r["config"], sort_keys=True): r["us"] for r in table["results"]}


def assert_complete_and_unrepeated(url, trials_per_study, studies):
    all_trials = trials_by_study(url)
    assert len(all_trials) == studies
    for name, trials in all_trials.items():
        assert not [t.number for t in trials if t.state == TrialState.RUNNING], name
        measured = [json.dumps(t.user_attrs["config"], sort_keys=True) for t in trials
                    if t.state == TrialState.COMPLETE and t.user_attrs.get("measured")]
        assert len(measured) == trials_per_study, name  # the budget, not more
        assert len(set(measured)) == len(measured), name  # no config measured twice


def expected_entries(url):
    """What a run writes for the trials the storage holds, by the rule the file follows
    (computed here from the recorded tables, not by the code under test): per settled bucket, the
    fastest of its measured configs that the kernel runs as written, and vLLM's default."""
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
        best = min((times[c], c) for c in candidates if times.get(c) is not None)
        entries[M] = json.loads(best[1])
    return entries


def optuna_study_attrs(url, name):
    storage = optuna_storage(url)
    return next(s.user_attrs for s in storage.get_all_studies() if s.study_name == name)


def assert_file_holds_the_best_of_the_storage(tmp_path, url):
    path = tmp_path / "configs" / FILE
    assert check_file(path) == []
    assert read_entries(path) == expected_entries(url)


def test_three_runs_started_together_share_the_studies(tmp_path, storage_url):
    procs = [start(tmp_path, storage_url, "trials=30", "buckets=[1,16,64]") for _ in range(3)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert "Traceback" not in err and "locked" not in err, err
    assert_complete_and_unrepeated(storage_url, 30, 3)
    assert_file_holds_the_best_of_the_storage(tmp_path, storage_url)
    owners = {t.user_attrs["worker"]["pid"] for ts in trials_by_study(storage_url).values()
              for t in ts if t.user_attrs.get("measured")}
    assert len(owners) >= 2, "the runs did not overlap"


@pytest.mark.slow
def test_four_sqlite_runs_on_one_study_never_see_a_locked_database(tmp_path):
    # SQLite is "measured safe" for one host: writers queue behind a long busy timeout.
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    procs = [start(tmp_path, url, "trials=40", "buckets=[16]") for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0 and "locked" not in err, err
    assert_complete_and_unrepeated(url, 40, 1)


def test_a_run_killed_beside_another_is_taken_over_and_a_rerun_has_nothing_left(tmp_path,
                                                                               storage_url):
    a = start(tmp_path, storage_url, "trials=40", "buckets=[1,16]")
    b = start(tmp_path, storage_url, "trials=40", "buckets=[1,16]")
    deadline = time.time() + 120
    while time.time() < deadline and a.poll() is None:
        counts = [len(t) for t in _measured_or_empty(storage_url).values()]
        if sum(counts) >= 10:
            break
        time.sleep(0.2)
    a.send_signal(signal.SIGKILL)
    a.wait()
    out, err = b.communicate(timeout=600)
    assert b.returncode == 0, err
    assert_complete_and_unrepeated(storage_url, 40, 2)
    before = measured_trials(storage_url)
    rerun = subprocess.run([sys.executable, "-m", "autotune",
                            *storage_args(tmp_path, storage_url, "trials=40", "buckets=[1,16]")],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "40 measured (0 new)" in rerun.stdout
    assert measured_trials(storage_url) == before


def _measured_or_empty(url):
    try:
        return measured_trials(url)
    except Exception:  # the storage is still being created
        return {}


# -- which RUNNING trials are dead --------------------------------------------------------------
@pytest.fixture
def study(tmp_path):
    storage = open_storage(f"journal:{tmp_path / 'studies.journal'}")
    return optuna.create_study(storage=storage, study_name="s")


def test_a_trial_of_a_live_process_is_kept_and_failed_once_the_process_is_gone(study):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        trial = study.ask()
        stamp = owner_stamp()
        stamp.update(pid=proc.pid, start=open(f"/proc/{proc.pid}/stat").read()
                     .rsplit(")", 1)[1].split()[19])
        trial.set_user_attr("worker", stamp)
        assert fail_dead_trials(study) == 0
        assert study.trials[0].state == TrialState.RUNNING
    finally:
        proc.kill()
        proc.wait()
    assert fail_dead_trials(study) == 1
    assert study.trials[0].state == TrialState.FAIL


def test_a_reused_pid_does_not_keep_a_dead_runs_trial(study):
    trial = study.ask()
    stamp = owner_stamp()
    stamp["start"] = "1"  # this pid, but started at another time: another process
    trial.set_user_attr("worker", stamp)
    assert fail_dead_trials(study) == 1


def test_another_machines_trial_lives_by_its_heartbeat(study):
    trial = study.ask()
    trial.set_user_attr("worker", {"machine": "elsewhere/0/0", "pid": 1, "start": "1",
                                   "beat": time.time()})
    t = study.trials[0]
    assert not is_dead(t)
    assert is_dead(t, now=time.time() + STALE_S + 1)


def test_an_ownerless_trial_is_dead_only_after_the_grace_period(study):
    study.ask()  # a run killed between asking and stamping leaves this
    t = study.trials[0]
    assert not is_dead(t)
    assert is_dead(t, now=time.time() + OWNERLESS_GRACE_S + 1)


def test_this_process_never_fails_its_own_trial(study):
    trial = study.ask()
    trial.set_user_attr("worker", owner_stamp())
    assert not is_dead(study.trials[0], now=time.time() + 10 * STALE_S)
