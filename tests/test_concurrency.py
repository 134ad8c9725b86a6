"""Several runs on one storage at once (SQLite, journal file, PostgreSQL): every run contributes,
no finished trial is lost, no config is measured twice, no trial of a dead run stays RUNNING."""

import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from autotune.study.liveness import (
    OWNERLESS_GRACE_S,
    STALE_S,
    fail_dead_trials,
    is_dead,
    owner_stamp,
)
from autotune.study.storage import open_storage
from tests.conftest import (
    assert_complete_and_unrepeated,
    assert_file_holds_the_best_of_the_storage,
    bound,
    measured_trials,
    storage_args,
    trials_by_study,
)


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


def test_three_runs_started_together_share_the_studies(tmp_path, storage_url):
    procs = [start(tmp_path, storage_url, "trials=30", "buckets=[1,16,64]") for _ in range(3)]
    results = [p.communicate(timeout=bound(600)) for p in procs]
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
        out, err = p.communicate(timeout=bound(600))
        assert p.returncode == 0 and "locked" not in err, err
    assert_complete_and_unrepeated(url, 40, 1)


def test_a_run_killed_beside_another_is_taken_over_and_a_rerun_has_nothing_left(tmp_path,
                                                                               storage_url):
    a = start(tmp_path, storage_url, "trials=40", "buckets=[1,16]")
    b = start(tmp_path, storage_url, "trials=40", "buckets=[1,16]")
    deadline = time.time() + bound(120)
    while time.time() < deadline and a.poll() is None:
        counts = [len(t) for t in _measured_or_empty(storage_url).values()]
        if sum(counts) >= 10:
            break
        time.sleep(0.2)
    a.send_signal(signal.SIGKILL)
    a.wait()
    out, err = b.communicate(timeout=bound(600))
    assert b.returncode == 0, err
    assert_complete_and_unrepeated(storage_url, 40, 2)
    before = measured_trials(storage_url)
    rerun = subprocess.run([sys.executable, "-m", "autotune",
                            *storage_args(tmp_path, storage_url, "trials=40", "buckets=[1,16]")],
                           cwd=tmp_path, capture_output=True, text=True, timeout=bound(300))
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
    assert not is_dead(study.trials[0], now=time.time() + bound(10) * STALE_S)
