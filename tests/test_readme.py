"""The README's first screen, as a new user types it: its block runs from a folder other than the
clone (`--help`, the CPU smoke run, a replay run on the bundled tables).

The clone and install lines are checked to be there, not run: installing would change the test
machine's packages; CI installs the package as the README says (.ci/run) before this test runs.
"""

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import bound

ROOT = Path(__file__).resolve().parent.parent


def first_screen() -> list[str]:
    """The lines of the README's first code block (under "Start here"), comments dropped."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Start here")
    block = text[text.index("```bash\n", start) + len("```bash\n"):]
    block = block[:block.index("```")]
    lines = [line.split("  #", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line]


def test_the_first_screen_clones_installs_and_runs_from_another_folder(tmp_path):
    lines = first_screen()
    assert lines[0].startswith("git clone ") and lines[0].endswith("&& cd autotune")
    installs = [line for line in lines if line.startswith("pip install")]
    assert installs == ["pip install torch==2.13.0 --index-url "
                        "https://download.pytorch.org/whl/cpu", 'pip install ".[test]"']
    commands = [line for line in lines[1:] if not line.startswith("pip install")]
    assert commands[0] == "python -m autotune --help"
    assert "python -m autotune shape=tiny device=cpu" in commands
    assert any("benchmark.tables=bundled" in line for line in commands)

    script = "set -euo pipefail\n" + "\n".join(commands) + "\n"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=bound(900))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.startswith("usage: python -m autotune shape=PRESET device=PRESET")
    configs = tmp_path / "outputs" / "configs"
    smoke = configs / "E=8,N=64,device_name=cpu.json"
    replay = configs / ("E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,"
                        "block_shape=[128,128].json")
    assert smoke.is_file() and replay.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]  # no run folders, no logs

    # The smoke run's summary shows the entries written, with their re-timed times (on the CPU
    # those differ from the first pass's).
    report = json.loads((configs / "E=8,N=64,device_name=cpu.report" / "report.json").read_text())
    for bucket in report["buckets"]:
        line = next(ln for ln in result.stdout.splitlines() if ln.startswith(f"M={bucket['M']} ")
                    and "(re-timed; " in ln and str(bucket["entry"]) in ln)
        assert f"{bucket['tuned_us']:9.2f} us" in line
