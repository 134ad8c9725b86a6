"""The process server the benchmarker's children are forked from: torch, Triton and the kernels
imported once (multiprocessing's forkserver).

Spawned, each child imports them itself: 14 compile processes importing at once took 4-6 s on an
H200 host before their first compile, and the measuring worker about 4.5 s before its first
measurement. The server never touches CUDA, so its children start as clean as spawned ones and
may use the GPU. It ends with the process that started it (its children, through
lifetime.die_with_parent, with it).

A run that measures on the GPU starts it before it builds its plan (`start_server`), so that its
imports overlap the plan's GPU check; otherwise the first child started waits for them. It keeps
the environment of the moment it starts: variables a child needs different (TRITON_INTERPRET for
the CPU's worker) need a spawned child.
"""

from __future__ import annotations

import multiprocessing as mp

# What the server imports before it forks (no CUDA in any of it).
PRELOAD = ["autotune.kernel"]


def start_server() -> None:
    """Start the server now, without waiting for its imports (6.0 s of an H100 tune's 13.2 s
    start-up were the pool's first process waiting for them, session 17)."""
    from multiprocessing import forkserver

    server_context()
    forkserver.ensure_running()


def server_context() -> mp.context.BaseContext:
    """The multiprocessing context whose processes are forked from the server."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)  # no effect once the server runs: it has them
    return ctx
