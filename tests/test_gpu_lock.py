"""One measurer per GPU: two runs on one GPU id, the second refused (or waiting) before it measures.

CPU machines have no GPU: AUTOTUNE_TEST_GPU_ID gives the runs one to lock (gpu_lock.measured_gpu),
so the real lock, the real processes and the kernel's release on SIGKILL are what is tested.
"""

import os
import signal
import subprocess
import sys
import time
import uuid

from autotune.run.gpu_lock import LOCK_DIR_ENV, TEST_GPU_ENV, lock_path
from tests.conftest import bound, measured_trials, replay_args


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_a_second_run_on_the_same_gpu_is_refused_or_waits_for_the_first(tmp_path, monkeypatch):
    gpu = f"GPU-test-{uuid.uuid4()}"
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))  # where lock_path looks, here too
    env = {**os.environ, TEST_GPU_ENV: gpu}
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    first = subprocess.Popen([sys.executable, "-m", "autotune",
                              *replay_args(first_dir, "trials=60", "patience=null")],
                             cwd=first_dir, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    lock = lock_path(gpu)
    try:
        assert wait_for(lambda: lock.exists() and lock.read_text().startswith(f"{first.pid} "),
                        bound(120)), "the first run did not take the GPU"

        refused = subprocess.run([sys.executable, "-m", "autotune", *replay_args(second_dir)],
                                 cwd=second_dir, env=env, capture_output=True, text=True,
                                 timeout=bound(120))
        assert refused.returncode == 2, refused.stderr
        [line] = refused.stderr.strip().splitlines()
        assert line.startswith(f"autotune: error: GPU {gpu} is being measured by pid {first.pid} "
                               f"(python -m autotune shape=qwen35_tp1 device=h200 ")
        assert line.endswith("one measurer per GPU; pass wait_for_gpu=true to wait for it, or "
                             "pick another GPU (CUDA_VISIBLE_DEVICES)")
        assert not (second_dir / "studies.db").exists()  # refused before touching anything

        err = second_dir / "stderr"
        with open(err, "w") as f:
            waiting = subprocess.Popen([sys.executable, "-m", "autotune",
                                        *replay_args(second_dir, "wait_for_gpu=true")],
                                       cwd=second_dir, env=env, stdout=subprocess.DEVNULL,
                                       stderr=f)
        assert wait_for(lambda: "waiting for GPU" in err.read_text(), bound(120)), err.read_text()
        assert first.poll() is None and not measured_trials(
            f"sqlite:///{second_dir / 'studies.db'}")  # it waits, measuring nothing
        os.kill(first.pid, signal.SIGKILL)  # the kernel releases the lock of a killed run
        assert waiting.wait(timeout=bound(300)) == 0, err.read_text()
        assert f"waiting for GPU {gpu}, measured by pid {first.pid}" in err.read_text()
        assert lock.read_text().startswith(f"{waiting.pid} ")
    finally:
        first.kill()
        first.wait()
