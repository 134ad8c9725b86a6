"""One measurer per GPU: a run holds an exclusive lock on the GPU it measures on.

Two runs timing on one GPU slow each other's kernels, and both store the skewed timings in their
studies. So the process that opens a GPU benchmarker first locks a file named by the GPU's UUID
(the same GPU under any CUDA_VISIBLE_DEVICES numbering) with flock, which the kernel releases
when the process dies, however it dies. The holder writes its pid and command into the file, so a
second run can say who holds the GPU. It refuses at once, or with `wait_for_gpu=true` waits for
the GPU to be free.

The lock files live in AUTOTUNE_LOCK_DIR (default /tmp/autotune-gpu-locks, shared by every user
of the host). AUTOTUNE_TEST_GPU_ID stands in for the GPU of a run that measures on none (the CPU
tests): every measuring process of that run locks it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

from autotune.errors import UserError

LOCK_DIR_ENV = "AUTOTUNE_LOCK_DIR"
TEST_GPU_ENV = "AUTOTUNE_TEST_GPU_ID"
DEFAULT_LOCK_DIR = Path("/tmp/autotune-gpu-locks")
POLL_S = 1.0  # how often a waiting run tries the lock again


def measured_gpu(plan) -> Optional[str]:
    """The id of the GPU this plan's benchmarker measures on; None when it measures on none."""
    fake = os.environ.get(TEST_GPU_ENV)
    if fake:
        return fake
    return plan.device.uuid if plan.benchmark_kind == "gpu" else None


@contextlib.contextmanager
def hold_gpu(plan, *, stop: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Hold the lock of the plan's GPU for the block (nothing to hold without a GPU).

    Refuses with one line naming the holder, or with plan.cfg.wait_for_gpu waits for it to end;
    stop() ends the wait (Ctrl-C in a worker) with KeyboardInterrupt.
    """
    gpu = measured_gpu(plan)
    if gpu is None:
        yield
        return
    fd = _open(gpu)
    try:
        _lock(fd, gpu, wait=plan.cfg.wait_for_gpu, stop=stop)
        with contextlib.suppress(OSError):  # a file opened read-only: the holder goes unnamed
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {_command()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def lock_path(gpu: str) -> Path:
    folder = Path(os.environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)
    return folder / (re.sub(r"[^A-Za-z0-9._-]", "_", gpu) + ".lock")


def _open(gpu: str) -> int:
    path = lock_path(gpu)
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(path.parent, 0o1777)  # like /tmp: every user's runs lock their GPUs here
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:  # another user's file: read-only still takes the lock
            return os.open(path, os.O_RDONLY)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)
        return fd
    except OSError as exc:
        raise UserError(f"cannot make the GPU lock {path} ({exc.strerror}); set {LOCK_DIR_ENV} "
                        f"to a writable folder every run on this host shares") from None


def _lock(fd: int, gpu: str, *, wait: bool, stop: Callable[[], bool]) -> None:
    said = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        holder = _holder(fd)
        if not wait:
            raise UserError(f"GPU {gpu} is being measured by {holder}: one measurer per GPU; "
                            f"pass wait_for_gpu=true to wait for it, or pick another GPU "
                            f"(CUDA_VISIBLE_DEVICES)")
        if not said:
            print(f"autotune: waiting for GPU {gpu}, measured by {holder}", file=sys.stderr,
                  flush=True)
            said = True
        if stop():
            raise KeyboardInterrupt
        time.sleep(POLL_S)


def _holder(fd: int) -> str:
    text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    pid, _, command = text.partition(" ")
    if not pid.isdigit():
        return "another process"
    if len(command) > 200:
        command = command[:200] + "..."
    return f"pid {pid}" + (f" ({command})" if command else "")


def _command() -> str:
    args = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    if args[0] == "__main__.py":
        args[0] = "python -m autotune"
    return " ".join(args)
