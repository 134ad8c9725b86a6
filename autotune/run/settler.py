"""Settling finished buckets' entries while the bucket loop searches the next ones.

A bucket's entry is settled (its finalists re-timed and checked: consolidate/) once its search
ends. The search leaves the GPU idle between its measurements, while the tuner proposes the next
config and while compiles finish: on an H100, half of a whole tune's search (session 10,
benchmarks/speed/README.md). Re-timing is nearly all GPU work. So with a benchmarker whose
measuring worker serves two threads in turn (bench/gpu.py) the entries are settled in one
background thread, in the order the buckets finished, and the GPU does the re-timing in the
search's gaps (session 12, H100: whole tunes 10-19% shorter, entries as fast). Otherwise (the
replay tables, `retime_alongside=false`) each is settled in the loop.
"""

from __future__ import annotations

from concurrent.futures import Future, wait
from typing import Callable

from autotune import wall_clock
from autotune.lifetime import lifelong_thread


class Settler:
    """`with Settler(settle, alongside) as settler:` ... `settler.submit(M)` as each bucket's
    search ends ... `settler.finish()`; leaving the block early (a stop, an error) closes it."""

    def __init__(self, settle: Callable[[int], None], alongside: bool):
        self._settle = settle
        # One settling thread for the process's whole life (autotune/lifetime.py).
        self._thread = lifelong_thread("autotune-settle") if alongside else None
        self._pending: list[Future] = []

    def __enter__(self) -> "Settler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def submit(self, M: int) -> None:
        """Settle bucket M: now, or after the buckets submitted before it, in the background.
        A failure of an earlier one (a stop, a storage error) is raised here."""
        self._raise_failed()
        if self._thread is None:
            self._settle(M)
        else:
            self._pending.append(self._thread.submit(self._in_background, M))

    def finish(self) -> None:
        """Wait for every bucket submitted (that wait is re-timing the loop no longer hides)."""
        if self._thread is None:  # each was settled when submitted
            return
        with wall_clock.waiting_for_background("re-timing"):
            for future in self._pending:
                future.result()
        self._pending.clear()

    def close(self) -> None:
        """Leave the buckets not begun unsettled (after a stop or an error, a rerun settles
        them) and wait for the one being settled: it measures with the caller's benchmarker."""
        for future in self._pending:
            future.cancel()  # only those not begun
        wait(self._pending)
        self._pending.clear()

    def _in_background(self, M: int) -> None:
        with wall_clock.alongside():
            self._settle(M)

    def _raise_failed(self) -> None:
        for future in [f for f in self._pending if f.done()]:
            self._pending.remove(future)
            future.result()
