"""Every path a run writes is refused in the plan when it cannot be written: one line, exit 2,
before anything is measured (no storage is made) and with nothing touched."""

import subprocess
import sys

import pytest

from tests.conftest import GRIDS, bound, replay_args, run_cli

FILE = "E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"
LONG = "x" * 300


def refused_before_measuring(tmp_path, *extra):
    """Run (not a dry run) with these overrides; it must refuse before opening the storage."""
    args = [a for a in replay_args(tmp_path) if not a.startswith("output_dir=")]
    result = run_cli(*args, *extra, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("autotune: error: ")
    assert not (tmp_path / "studies.db").exists()
    return line


def test_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "out").write_text("keep me")
    line = refused_before_measuring(tmp_path, f"output_dir={tmp_path / 'out'}")
    assert line.endswith(f"output_dir={tmp_path / 'out'}: {tmp_path / 'out'} is a file, not a "
                         f"folder; pass a folder (it is created if missing), or move the file "
                         f"away")
    assert (tmp_path / "out").read_text() == "keep me"


def test_output_dir_under_a_file(tmp_path):
    (tmp_path / "out").write_text("keep me")
    line = refused_before_measuring(tmp_path, f"output_dir={tmp_path / 'out' / 'configs'}")
    assert f"{tmp_path / 'out'} is a file, so no folder can be made under it" in line


def test_output_dir_with_a_name_too_long(tmp_path):
    line = refused_before_measuring(tmp_path, f"output_dir={tmp_path / LONG}")
    assert "is 300 bytes, more than the 255 a file name may have; pass a shorter path" in line


def test_output_dir_on_a_read_only_disk(tmp_path, small_disk):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    line = refused_before_measuring(tmp_path, f"output_dir={small_disk / 'configs'}")
    assert line.endswith(f"{small_disk} is on a read-only file system; pass a writable path")


def test_the_config_file_or_its_report_taken_by_something_else(tmp_path):
    out = tmp_path / "configs"
    (out / FILE).mkdir(parents=True)
    line = refused_before_measuring(tmp_path, f"output_dir={out}")
    assert f"{out / FILE} is a folder, not a file" in line
    (out / FILE).rmdir()
    (out / FILE.replace(".json", ".report")).write_text("not a folder")
    line = refused_before_measuring(tmp_path, f"output_dir={out}")
    assert f"{out / FILE.replace('.json', '.report')} is a file, not a folder" in line


def test_install_dir_and_table_dir_are_checked_too(tmp_path):
    (tmp_path / "blocker").write_text("")
    line = refused_before_measuring(tmp_path, f"output_dir={tmp_path / 'configs'}",
                                    f"install_dir={tmp_path / 'blocker' / 'vllm'}")
    assert line.startswith(f"autotune: error: install_dir={tmp_path / 'blocker' / 'vllm'}: ")
    line = refused_before_measuring(tmp_path, f"output_dir={tmp_path / 'configs'}",
                                    "sampler=grid", f"table_dir={tmp_path / 'blocker'}")
    assert line.startswith(f"autotune: error: table_dir={tmp_path / 'blocker'}: ")


def test_a_dry_run_says_the_same_and_creates_nothing(tmp_path):
    (tmp_path / "out").write_text("")
    result = run_cli(*replay_args(tmp_path), f"output_dir={tmp_path / 'out'}", "dry_run=true",
                     cwd=tmp_path)
    assert result.returncode == 2 and "is a file, not a folder" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("where", ["under_a_file", "too_long", "a_folder"])
def test_evaluate_refuses_its_json_path_before_evaluating(tmp_path, where):
    (tmp_path / "f").write_text("")
    (tmp_path / "d").mkdir()
    path = {"under_a_file": tmp_path / "f" / "eval.json", "too_long": tmp_path / LONG,
            "a_folder": tmp_path / "d"}[where]
    result = subprocess.run([sys.executable, "-m", "autotune.evaluate", str(GRIDS), "--json",
                             str(path)], capture_output=True, text=True, timeout=bound(120))
    assert result.returncode == 2 and result.stdout == ""  # nothing was evaluated
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"autotune.evaluate: error: --json {path}: ")


@pytest.mark.parametrize("kind", ["sqlite:///", "journal:"])
def test_a_storage_file_that_cannot_be_made_is_refused_in_the_plan(tmp_path, kind):
    (tmp_path / "f").write_text("")
    for where, words in [(tmp_path / "f" / "s.db", f"{tmp_path / 'f'} is a file, so no s.db can "
                                                   f"be made under it"),
                         (tmp_path / LONG, "is 300 bytes"),
                         (tmp_path, f"{tmp_path} is a folder, not a file")]:
        result = run_cli(*replay_args(tmp_path), f"storage={kind}{where}", "dry_run=true",
                         cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"autotune: error: storage={kind}{where}: ") and words in line
