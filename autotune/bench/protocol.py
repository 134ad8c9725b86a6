"""The Benchmarker Protocol: the one seam between the search and whatever times a config.

A study never knows whether it talks to a GPU, the Triton interpreter or a recorded table. A
config that fails to compile, runs out of resources or faults is a `Measurement` with an
`infeasible` reason, never an exception.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Measurement:
    us: Optional[float]  # median microseconds per MoE call; None when infeasible
    spread: float = 0.0  # relative spread of the samples (IQR / median)
    infeasible: Optional[str] = None  # why the config cannot run
    samples: tuple[float, ...] = ()
    verified: Optional[bool] = None  # output matched the reference (None: not checked)
    method: Mapping[str, Any] = field(default_factory=dict)  # how it was timed

    @property
    def ok(self) -> bool:
        return self.infeasible is None and self.us is not None

    @classmethod
    def failed(cls, reason: str, **method: Any) -> "Measurement":
        return cls(us=None, infeasible=reason, method=method)


@runtime_checkable
class Benchmarker(Protocol):
    """Times one kernel config at one batch size."""

    def identity(self) -> dict[str, Any]:
        """What changes the numbers (kind, timing settings, kernel version): part of study names."""
        ...

    def default_buckets(self) -> Optional[list[int]]:
        """Batch sizes this benchmarker can time when the user names none (None: any)."""
        ...

    def prepare(self, configs: Iterable[Mapping[str, int]], M: int) -> None:
        """A hint that these configs come next (compile ahead); may do nothing."""
        ...

    def measure(self, config: Mapping[str, int], M: int) -> Measurement:
        """One fresh timing: called again for the same config, it times again (finalists are
        re-timed by calling it in interleaved rounds, A B C, B C A, ...)."""
        ...

    def verify(self, config: Mapping[str, int], M: int) -> Optional[bool]:
        """Whether the kernel's output with this config matches the reference on this device
        (fresh random inputs); None when this benchmarker cannot check (replay)."""
        ...

    def close(self) -> None:
        ...


@runtime_checkable
class Screening(Protocol):
    """Optional: a benchmarker that can take a cheap first look at a config.

    `screen` times the config the same way as `measure` (same inputs, L2 mode and routing) but with
    a fraction of the replays (e.g. one warm-up and 3 timed), so it is noisier and cheaper. With
    a pruner configured, the study screens every new config and takes the full `measure` only
    when the look is not clearly slower than the best so far. A config that cannot run returns a
    failed Measurement here too (it is then not measured again). Benchmarkers without it are
    simply never screened.

    `visit` brackets a config's look, the pruner's decision and its measurement: a benchmarker
    shared by threads may serve this one alone meanwhile (the GPU's: the look warms the
    measurement up); others yield at once.
    """

    def screen(self, config: Mapping[str, int], M: int) -> Measurement:
        ...

    def visit(self, config: Mapping[str, int], M: int) -> AbstractContextManager[None]:
        ...


# Before each round from the third: which configs (by index) need no more rounds, given the
# measurements so far (consolidate/retime.py: finalists that can no longer win).
OutOfContest = Callable[[list[list[Measurement]]], set[int]]


@runtime_checkable
class Rounds(Protocol):
    """Optional: a benchmarker that times configs in interleaved rounds itself, cheaper than one
    `measure` per round (the GPU: each config's graph captured once, then replayed each round).

    Same result as `measure_interleaved`: per config, one Measurement per round, or the rounds up
    to and ending with the failed one. One that times every round in a single request may ignore
    `out_of_contest` (all configs then get every round).
    """

    def measure_rounds(self, configs: Sequence[Mapping[str, int]], M: int, rounds: int,
                       out_of_contest: Optional[OutOfContest] = None) -> list[list[Measurement]]:
        ...


def measure_interleaved(bench: Benchmarker, configs: Sequence[Mapping[str, int]], M: int,
                        rounds: int, out_of_contest: Optional[OutOfContest] = None
                        ) -> list[list[Measurement]]:
    """Each config measured once per round, every round starting one config later (A B C, B C A,
    ...) so that drift in clocks or temperature falls on all alike; a config that fails is not
    measured again, nor one `out_of_contest` names before a round (from the second)."""
    timings: list[list[Measurement]] = [[] for _ in configs]
    done: set[int] = set()
    n = len(configs)
    for k, i in enumerate(interleaved_order(n, rounds)):
        if out_of_contest is not None and k >= n and k % n == 0:  # a round from the second
            done |= out_of_contest(timings)
        if i not in done and all(m.ok for m in timings[i]):
            timings[i].append(bench.measure(configs[i], M))
    return timings


def interleaved_order(n: int, rounds: int) -> Iterator[int]:
    """Which of n configs to time next, over the rounds: 0 1 2, 1 2 0, 2 0 1, ..."""
    for r in range(rounds):
        for j in range(n):
            yield (r + j) % n


@dataclass
class BenchStats:
    """What a benchmarker with a measuring worker did (the run's summary line)."""

    measurements: int = 0
    looks: int = 0  # first looks (`Screening`)
    infeasible: int = 0
    measure_seconds: float = 0.0  # wall time the measuring worker spent on measurements
    compile_wait_seconds: float = 0.0  # time measurements waited for the compiler
    idle_seconds: float = 0.0  # of which the measuring worker had nothing to do (the GPU idle)
    compile_seconds: float = 0.0  # compile time summed over the pool's workers
    compiled: int = 0
    compile_errors: int = 0  # configs the pool could not compile (the worker tried again)
    worker_restarts: int = 0
    worker_start_wait_seconds: float = 0.0  # measurements waited for the measuring worker
    faults: tuple[str, ...] = ()

    @property
    def idle_share(self) -> float:
        """Of the time measuring or waiting for a compile, the share the GPU had no work."""
        busy = self.measure_seconds + self.idle_seconds
        return self.idle_seconds / busy if busy else 0.0


@runtime_checkable
class Reporting(Protocol):
    """Optional: a benchmarker that accounts for its time and says what it ran on.

    `stats()` feeds the run's summary line; `environment` (versions, clocks; empty until the
    first measurement) goes into the grid tables a `sampler=grid` run records.
    """

    environment: Mapping[str, Any]

    def stats(self) -> BenchStats:
        ...


@runtime_checkable
class Speculating(Protocol):
    """Optional: a benchmarker that can compile, in spare time, configs that may be asked later.

    The study knows its likely next configs only as a ranking (the prior of `prior_gp`); compiling
    the top of it while the GPU times others turns most later compile waits into cache hits.
    """

    def speculate(self, candidates: Iterable[tuple[Mapping[str, int], int]],
                  first: bool = False) -> None:
        """(config, M) pairs, likeliest first; replaces the previous list (first=True: goes in
        front of it, as the search's forecast of its next proposals)."""
        ...
