"""Launching this package's Triton kernels, or only compiling them: one code path for both.

Every kernel launch in the package goes through :func:`launch`. Normally it launches. Inside
:func:`intercept_launches` a handler gets the launch instead; :func:`compile_only` is the handler
that compiles the kernel for exactly these arguments (Triton's ``JITFunction.warmup``, same API in
Triton 3.4 to 3.9) and launches nothing. So the code that builds a real call's arguments also
builds the compile's: dtypes, pointer alignment, the integers Triton specializes on (== 1,
% 16), constexprs. Run on meta tensors (no memory, no data) the whole MoE call becomes a compile
of every kernel it would launch.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# (kernel, grid, args, kwargs) -> None; None means launch for real.
LaunchHandler = Callable[[Any, tuple, tuple, dict], None]
_handler: contextvars.ContextVar[LaunchHandler | None] = contextvars.ContextVar(
    "autotune_kernel_launch_handler", default=None
)


class KernelCompileError(RuntimeError):
    """A kernel does not compile for a config, or needs more of a resource than the GPU has."""


def launch(kernel: Any, grid: tuple, *args: Any, **kwargs: Any) -> None:
    """``kernel[grid](*args, **kwargs)``, unless a handler is installed (see the module doc)."""
    handler = _handler.get()
    if handler is None:
        kernel[grid](*args, **kwargs)
    else:
        handler(kernel, grid, args, kwargs)


@contextmanager
def intercept_launches(handler: LaunchHandler) -> Iterator[None]:
    """Hand every :func:`launch` inside the block to ``handler`` instead of launching."""
    token = _handler.set(handler)
    try:
        yield
    finally:
        _handler.reset(token)


def kernel_name(kernel: Any) -> str:
    fn = getattr(kernel, "fn", kernel)
    return getattr(fn, "__name__", repr(kernel))


def _reason(exc: BaseException) -> str:
    # Triton's CompilationError puts the source excerpt first and the cause on the last line.
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    return f"{type(exc).__name__}: {text[:300]}"


def compile_kernel(kernel: Any, grid: tuple, args: tuple, kwargs: dict) -> Any:
    """Compile (or load from Triton's caches) the binary this launch would run; launch nothing.

    Raises :class:`KernelCompileError` when it does not compile or when its shared memory exceeds
    the device's (the check the first real launch would make).
    """
    from triton.runtime import driver

    name = kernel_name(kernel)
    try:
        compiled = kernel.warmup(*args, grid=grid, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any compiler failure means: does not compile
        raise KernelCompileError(f"{name} does not compile: {_reason(exc)}") from exc
    device = driver.active.get_current_device()
    limit = driver.active.utils.get_device_properties(device)["max_shared_mem"]
    shared = compiled.metadata.shared
    if shared > limit:
        raise KernelCompileError(
            f"{name} needs {shared} bytes of shared memory, the GPU has {limit}: out of resources"
        )
    return compiled


@contextmanager
def compile_only(compiled: list[str] | None = None) -> Iterator[None]:
    """Compile every kernel launched inside the block instead of launching it.

    The names of the compiled kernels are appended to ``compiled`` when given.
    """

    def handler(kernel: Any, grid: tuple, args: tuple, kwargs: dict) -> None:
        compile_kernel(kernel, grid, args, kwargs)
        if compiled is not None:
            compiled.append(kernel_name(kernel))

    with intercept_launches(handler):
        yield
