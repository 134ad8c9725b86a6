"""Stopping at a safe point: the signal handler of run/stop.py never blocks the run it stops."""

import os
import signal
import subprocess
import sys
import time

from tests.conftest import bound

# A run's loop waiting on STOP in short steps (the parent of `workers=N` polls its workers so,
# a worker polls buckets other runs are measuring), under graceful_stop.
WAITING_LOOP = """
import os, sys
from autotune.run.stop import STOP, graceful_stop
with graceful_stop(quiet=True):
    print("ready", flush=True)
    while not os.path.exists(sys.argv[1]):
        STOP.wait(0.0001)
    print("stopped" if STOP.is_set() else "not stopped", flush=True)
"""


def test_stop_signals_landing_while_the_loop_waits_on_stop_never_hang_it(tmp_path):
    # SIGTERM is handled by graceful_stop every time (Ctrl-C only the first): a signal handled
    # while the main thread held STOP's lock inside STOP.wait hung the run for good.
    done = tmp_path / "done"
    loop = subprocess.Popen([sys.executable, "-c", WAITING_LOOP, str(done)],
                            stdout=subprocess.PIPE, text=True)
    assert loop.stdout.readline() == "ready\n"
    for _ in range(2000):
        os.kill(loop.pid, signal.SIGTERM)
        time.sleep(0.0005)
    done.touch()
    try:
        out, _ = loop.communicate(timeout=bound(30))
    finally:
        loop.kill()
    assert out == "stopped\n"
