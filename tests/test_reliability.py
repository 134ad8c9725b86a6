"""Faults a long unattended run meets: Ctrl-C, SIGKILL at random moments, damaged or foreign
storage, a read-only or full disk, bad user presets, and replacing a better config file.

Each ends either in a complete result equal to an uninterrupted run's, or in one clear line and
a non-zero exit with nothing modified. The README's reliability section sums these tests up.
"""

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autotune.files.check import check_file
from autotune.files.vllm import read_entries, render, write_config_file
from autotune.study.liveness import OWNERLESS_GRACE_S
from autotune.study.storage import open_storage
from tests.conftest import (
    GRIDS,
    assert_complete_and_unrepeated,
    bound,
    expected_entries,
    measured_trials,
    run_cli,
    storage_args,
    trials_by_study,
)

FILE = "E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"
# How many SIGKILLs each storage takes in the random-kill test (the README reports a long run).
KILLS = int(os.environ.get("AUTOTUNE_FAULT_KILLS", "10"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(result, *words):
    assert result.returncode not in (0, None), result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("autotune: error:")]
    assert len(lines) == 1, result.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def cli(tmp_path, url, *extra):
    args = storage_args(tmp_path, url, *extra)
    return subprocess.Popen([sys.executable, "-m", "autotune", *args],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def count(url) -> int:
    try:
        return sum(map(len, measured_trials(url).values()))
    except Exception:  # not created yet
        return 0


def expected_file(url) -> str:
    """The file a run writes for the trials the storage holds (see expected_entries)."""
    return render(expected_entries(url), "3.6.0")


@pytest.fixture(params=["sqlite", "journal"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    return f"journal:{tmp_path / 'studies.journal'}"


def storage_is_sound(url) -> None:
    if url.startswith("sqlite:///"):
        con = sqlite3.connect(url[len("sqlite:///"):])
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.close()
    else:  # every complete line of the journal is JSON (a partial last line is cut on append)
        journal = Path(url[len("journal:"):])
        # A kill during start-up (slow on a loaded machine) comes before the journal exists.
        lines = journal.read_bytes().split(b"\n") if journal.exists() else []
        for line in lines[:-1]:
            json.loads(line)
    open_storage(url)


# -- interruption --------------------------------------------------------------------------------
def test_ctrl_c_at_random_moments_abandons_the_trial_writes_the_file_and_says_how_to_resume(
        tmp_path, url):
    rng = random.Random(6)
    for _ in range(3):
        run = cli(tmp_path, url, "trials=25")
        target = count(url) + rng.randint(10, 40)
        deadline = time.time() + bound(120)
        while count(url) < target and time.time() < deadline and run.poll() is None:
            time.sleep(0.2)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=bound(120))
        assert "Traceback" not in err, err
        if run.returncode == 0:  # the signal came while it was writing the files: it finished
            assert (tmp_path / "configs" / FILE).read_text() == expected_file(url)
            continue
        assert run.returncode == 130, err
        assert "rerun the same command to resume (python -m autotune shape=qwen35_tp1" in err
        settled = expected_entries(url)
        if settled:  # the file holds every bucket settled so far, and only those
            assert "wrote " in out
            assert (tmp_path / "configs" / FILE).read_text() == expected_file(url)
        stamped_running = [t.number for ts in trials_by_study(url).values() for t in ts
                           if t.state.name == "RUNNING" and "worker" in t.user_attrs]
        assert stamped_running == []  # the trial in flight was abandoned, not left RUNNING
    assert expected_entries(url), "no bucket was finished between the interrupts"
    done = measured_trials(url)
    rerun = run_cli(*storage_args(tmp_path, url, "trials=25"), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    after = measured_trials(url)
    assert all({n: after[s][n] for n in t} == t for s, t in done.items())
    assert (tmp_path / "configs" / FILE).read_text() == expected_file(url)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_the_file_matches(tmp_path, url):
    rng = random.Random(5)
    before: dict = {}
    for _ in range(KILLS):
        run = cli(tmp_path, url, "trials=40")
        time.sleep(rng.uniform(0.2, 2.5))  # anywhere: start-up, asking, telling, writing
        run.send_signal(signal.SIGKILL)
        run.communicate()
        storage_is_sound(url)
        now = measured_trials(url)
        for name, trials in before.items():  # every finished trial is still there, unchanged
            assert {n: now[name][n] for n in trials} == trials
        before = now
    time.sleep(OWNERLESS_GRACE_S)  # a kill between asking and stamping leaves an ownerless trial
    final = run_cli(*storage_args(tmp_path, url, "trials=40"), cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert_complete_and_unrepeated(url, 40, 5)
    assert (tmp_path / "configs" / FILE).read_text() == expected_file(url)


@pytest.mark.slow
def test_a_killed_and_resumed_grid_run_writes_what_an_uninterrupted_run_writes(tmp_path):
    # The grid sampler proposes in a fixed order, so "the same trials" is a second, clean run.
    args = ("sampler=grid", "search_space=small", "buckets=[1,16]")
    clean = tmp_path / "clean"
    clean.mkdir()
    assert run_cli(*storage_args(clean, f"journal:{clean / 's.journal'}", *args),
                   cwd=clean).returncode == 0
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    rng = random.Random(7)
    for _ in range(5):
        run = cli(tmp_path, url, *args)
        time.sleep(rng.uniform(0.5, 2.0))
        run.send_signal(signal.SIGKILL)
        run.communicate()
    time.sleep(OWNERLESS_GRACE_S)
    final = run_cli(*storage_args(tmp_path, url, *args), cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert ((tmp_path / "configs" / FILE).read_text()
            == (clean / "configs" / FILE).read_text())

    def configs(u):
        return {n: sorted(c for c, _ in t.values()) for n, t in measured_trials(u).items()}
    assert configs(url) == configs(f"journal:{clean / 's.journal'}")


# -- damaged, foreign and unwritable storage -----------------------------------------------------
@pytest.mark.parametrize("content, words", [
    (b"this is not a journal\n" * 50, ["not an Optuna journal file", "left untouched"]),
    (b"SQLite format 3\0" + b"x" * 200, ["not an Optuna journal file"]),
    (b'{"op_code":0,"worker_id":"w","study_name":"s","directions":[1]}\n{"op_code": oops\n'
     b'{"op_code":0,"worker_id":"w","study_name":"t","directions":[1]}\n',
     ["damaged journal", "left untouched"]),
])
def test_foreign_or_damaged_journal_is_refused_and_left_untouched(tmp_path, content, words):
    path = tmp_path / "studies.journal"
    path.write_bytes(content)
    before = digest(path)
    refused(run_cli(*storage_args(tmp_path, f"journal:{path}"), cwd=tmp_path), *words)
    assert digest(path) == before


def test_a_journal_cut_mid_line_by_a_kill_is_repaired_and_resumed(tmp_path):
    url = f"journal:{tmp_path / 'studies.journal'}"
    assert run_cli(*storage_args(tmp_path, url, "trials=5"), cwd=tmp_path).returncode == 0
    before = measured_trials(url)
    path = tmp_path / "studies.journal"
    with open(path, "ab") as f:  # what a writer killed in the middle of write() leaves
        f.write(b'{"op_code":5,"worker_id":"dead","trial_id":3,"user_at')
    result = run_cli(*storage_args(tmp_path, url, "trials=8"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    storage_is_sound(url)
    after = measured_trials(url)
    assert all({n: after[s][n] for n in t} == t for s, t in before.items())
    assert_complete_and_unrepeated(url, 8, 5)


# What a run killed inside a transaction leaves, before WAL is on (Optuna creating its tables):
# pages already written to the database (a cache too small to hold them) and the originals in a
# hot journal that only a writer may roll back. A read-only check then fails with "attempt to
# write a readonly database".
_KILLED_WRITER = """
import os, signal, sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA cache_size=2")
con.execute("BEGIN")
con.execute("CREATE TABLE IF NOT EXISTS " + sys.argv[2] + " (key TEXT, value_json TEXT)")
for i in range(200):
    con.execute("INSERT INTO " + sys.argv[2] + " VALUES (?, ?)", (str(i), "x" * 4000))
os.kill(os.getpid(), signal.SIGKILL)
"""


def leave_hot_journal(db: Path, table: str) -> Path:
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(db), table])
    journal = db.with_name(db.name + "-journal")
    assert journal.stat().st_size > 0
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("SELECT * FROM sqlite_master")
    return journal


def test_a_run_killed_while_creating_the_database_is_rolled_back_and_resumed(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    journal = leave_hot_journal(tmp_path / "studies.db", "studies")
    result = run_cli(*storage_args(tmp_path, url, "trials=5"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not journal.exists()  # rolled back by the run's first write
    storage_is_sound(url)
    assert_complete_and_unrepeated(url, 5, 5)


def test_a_foreign_database_left_mid_transaction_is_refused_and_left_untouched(tmp_path):
    db = tmp_path / "studies.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE invoices (key TEXT, value_json TEXT)")
    con.commit()
    con.close()
    journal = leave_hot_journal(db, "invoices")
    before = digest(db), digest(journal)
    refused(run_cli(*storage_args(tmp_path, f"sqlite:///{db}"), cwd=tmp_path),
            "something else", "invoices")
    assert (digest(db), digest(journal)) == before


def fill(disk: Path, leave: int = 0) -> None:
    """Fill the disk up to `leave` free bytes."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(disk / "filler", "wb") as f:
        try:
            f.write(b"\0" * max(0, free - leave))
            f.flush()
        except OSError:
            pass


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_storage_on_a_read_only_disk_is_refused_with_nothing_changed(tmp_path, small_disk, kind):
    url = (f"sqlite:///{small_disk / 'studies.db'}" if kind == "sqlite"
           else f"journal:{small_disk / 'studies.journal'}")
    assert run_cli(*storage_args(tmp_path, url, "trials=4"), cwd=tmp_path).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    files = {p: digest(p) for p in small_disk.iterdir() if p.is_file()}
    refused(run_cli(*storage_args(tmp_path, url, "trials=8"), cwd=tmp_path), "read-only",
            "nothing was changed")
    assert {p: digest(p) for p in small_disk.iterdir() if p.is_file()} == files


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_storage_on_a_full_disk_is_refused_with_nothing_changed(tmp_path, small_disk, kind):
    url = (f"sqlite:///{small_disk / 'studies.db'}" if kind == "sqlite"
           else f"journal:{small_disk / 'studies.journal'}")
    assert run_cli(*storage_args(tmp_path, url, "trials=4"), cwd=tmp_path).returncode == 0
    fill(small_disk)
    store = next(p for p in small_disk.iterdir() if p.name.startswith("studies"))
    before = digest(store)
    refused(run_cli(*storage_args(tmp_path, url, "trials=8"), cwd=tmp_path), "full",
            "free some space")
    assert digest(store) == before


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_disk_filling_up_mid_run_ends_in_one_line_and_loses_nothing(tmp_path, small_disk, kind):
    url = (f"sqlite:///{small_disk / 'studies.db'}" if kind == "sqlite"
           else f"journal:{small_disk / 'studies.journal'}")
    assert run_cli(*storage_args(tmp_path, url, "trials=4"), cwd=tmp_path).returncode == 0
    before = measured_trials(url)
    fill(small_disk, leave=(1 << 20) + 256 * 1024)  # passes the start check, fills up soon
    result = run_cli(*storage_args(tmp_path, url, "trials=400"), cwd=tmp_path)
    line = refused(result)
    assert "full" in line or "No space" in line, line
    (small_disk / "filler").unlink()
    storage_is_sound(url)
    after = measured_trials(url)
    assert all({n: after[s][n] for n in t} == t for s, t in before.items())
    assert run_cli(*storage_args(tmp_path, url, "trials=6"), cwd=tmp_path).returncode == 0


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("preset, words", [
    ("experts: lots\n", ["experts", "lots"]),
    ("expertz: 64\n", ["expertz"]),
    ("block_shape: wide\n", ["block_shape"]),
])
def test_a_user_preset_with_a_wrong_type_or_unknown_key_is_one_line(tmp_path, preset, words):
    conf = tmp_path / "myconf" / "shape"
    conf.mkdir(parents=True)
    base = ("model: mine\nexperts: 64\nhidden_size: 2048\nintermediate_size: 512\ntopk: 4\n"
            "dtype: bf16\n")
    keys = {ln.split(":")[0] for ln in preset.splitlines()}
    text = "".join(ln + "\n" for ln in base.splitlines() if ln.split(":")[0] not in keys) + preset
    (conf / "mine.yaml").write_text(text)
    result = run_cli("--config-dir", str(tmp_path / "myconf"), "shape=mine", "device=h100",
                     "dry_run=true", cwd=tmp_path)
    assert result.returncode == 2
    line = refused(result, *words)
    assert "shape" in line


def test_a_user_preset_that_is_right_is_used(tmp_path):
    conf = tmp_path / "myconf" / "shape"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text("model: mine\nexperts: 64\nhidden_size: 2048\n"
                                    "intermediate_size: 512\ntopk: 4\ndtype: bf16\n")
    result = run_cli("--config-dir", str(tmp_path / "myconf"), "shape=mine", "device=h100",
                     "dry_run=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "E=64,N=512,device_name=NVIDIA_H100_80GB_HBM3.json" in result.stdout


@pytest.mark.parametrize("mutate", [
    lambda t: t["results"][0].update(us="fast"),
    lambda t: t.update(results={"not": "a list"}),
    lambda t: t["results"][0]["config"].pop("num_warps"),
    lambda t: t.update(M="sixteen"),
])
def test_a_malformed_recorded_table_is_refused_in_one_line(tmp_path, mutate):
    table = json.loads((GRIDS / "NVIDIA_H200_E256_N512_K2048_fp8block_M16.json").read_text())
    mutate(table)
    bad = tmp_path / "table.json"
    bad.write_text(json.dumps(table))
    refused(run_cli("shape=qwen35_tp1", "device=h200", "benchmark=replay",
                    f"benchmark.tables=[{bad}]", "dry_run=true", cwd=tmp_path),
            "malformed", str(bad))


# -- never replacing a better file silently -----------------------------------------------------
E1 = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
      "num_warps": 4, "num_stages": 3}
E2 = dict(E1, BLOCK_SIZE_N=128)


def test_a_file_with_fewer_buckets_keeps_the_old_one_beside_it_and_says_so(tmp_path):
    path = tmp_path / FILE
    write_config_file(path, {1: E1, 16: E1, 64: E1}, "3.6.0")
    old = path.read_text()
    written = write_config_file(path, {1: E2}, "3.6.0")
    assert written.kept is not None and written.kept.read_text() == old
    assert "buckets [16, 64]" in written.describe() and written.kept.name in written.describe()
    assert read_entries(path) == {1: E2}
    assert check_file(path) == []


def test_a_slower_entry_keeps_the_old_file_and_an_equal_or_faster_one_does_not(tmp_path):
    path = tmp_path / FILE
    write_config_file(path, {1: E1}, "3.6.0")
    times = {json.dumps(E1, sort_keys=True): 10.0, json.dumps(E2, sort_keys=True): 12.5}
    timing = lambda M, c: times.get(json.dumps(dict(c), sort_keys=True))  # noqa: E731
    slower = write_config_file(path, {1: E2}, "3.6.0", timing=timing)
    assert slower.kept is not None and "M=1 entry was faster (10.00 us vs 12.50 us)" in \
        slower.describe()
    faster = write_config_file(path, {1: E1}, "3.6.0", timing=timing)
    assert faster.kept is None
    same = write_config_file(path, {1: E1}, "3.6.0", timing=timing)
    assert same.kept is None
    assert len(list(tmp_path.iterdir())) == 2  # the file and the one kept copy


def test_an_unreadable_old_file_is_kept_too(tmp_path):
    path = tmp_path / FILE
    path.write_text("{ not json")
    written = write_config_file(path, {1: E1}, "3.6.0")
    assert written.kept is not None and written.kept.read_text() == "{ not json"


def test_a_narrower_rerun_keeps_the_wider_file_beside_the_new_one(tmp_path):
    url = f"journal:{tmp_path / 'studies.journal'}"
    assert run_cli(*storage_args(tmp_path, url, "trials=4", "buckets=[1,16,64]"),
                   cwd=tmp_path).returncode == 0
    wide = (tmp_path / "configs" / FILE).read_text()
    result = run_cli(*storage_args(tmp_path, url, "trials=4", "buckets=[1]"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "kept the previous file as" in result.stdout and "[16, 64]" in result.stdout
    kept = [p for p in (tmp_path / "configs").iterdir() if ".prev-" in p.name]
    assert len(kept) == 1 and kept[0].read_text() == wide
    assert list(read_entries(tmp_path / "configs" / FILE)) == [1]
