"""`python -m autotune shape=<preset> device=<preset> [key=value ...]`: tune and write the file.

A thin Hydra entry: compose the config, build the plan (or print it for dry_run=true), run it.
Mistakes a user can fix end in one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import textwrap
from typing import Optional

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from autotune import wall_clock
from autotune.config import Config, config_root, register_configs
from autotune.errors import EXIT_INTERRUPTED, UserError

register_configs()


class JobFailed(Exception):
    """A multirun job's non-zero exit, raised instead of SystemExit: Hydra then runs the other
    jobs and re-raises the first failure once all have run (SystemExit stopped the sweep)."""

    def __init__(self, code: int):
        super().__init__(f"exit code {code}")
        self.code = code


@hydra.main(config_path=str(config_root()), config_name="config", version_base="1.3")
def main(dict_cfg: DictConfig) -> None:
    wall_clock.begin_run()
    wall_clock.start_up_step("interpreter, imports, config")
    try:
        try:
            cfg: Config = OmegaConf.to_object(dict_cfg)  # type: ignore[assignment]
            run(cfg)
        except UserError as exc:
            print(f"autotune: error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:  # a second Ctrl-C while the first was being handled
            print(f"autotune: interrupted; finished trials are stored: {resume_hint()}",
                  file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
    except SystemExit as exc:
        # Ctrl-C stops the whole sweep; any other failure stops only its job.
        if exc.code not in (0, None, EXIT_INTERRUPTED) and _in_multirun():
            raise JobFailed(int(exc.code)) from None  # type: ignore[arg-type]
        raise


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run(cfg: Config) -> None:
    from autotune.bench import start_early
    from autotune.plan import benchmark_kind, build_plan
    from autotune.study.storage import storage_errors

    if not cfg.dry_run and cfg.workers <= 1:
        start_early(benchmark_kind(cfg), cfg.benchmark)
    plan = build_plan(cfg, probe_gpu=not cfg.dry_run)
    wall_clock.start_up_step("plan and GPU check")
    if cfg.dry_run:
        print(plan.describe())
        return
    from autotune.run.tune import tune

    if plan.storage_note():
        print(f"autotune: storage {plan.storage}{plan.storage_note()}", file=sys.stderr)
    if plan.interpreter_warning():
        print(f"autotune: warning: {plan.interpreter_warning()}", file=sys.stderr)
    # Ctrl-C and SIGTERM (Slurm, `kill`) stop the run at a safe point: see run/stop.py.
    with storage_errors(plan.storage):
        result = tune(plan)
    for o in result.outcomes:
        print(f"M={o.M:<5d} {len(o.records):3d} measured ({o.new_measurements} new)  "
              f"{bucket_line(o, result.entries.get(o.M), result.settled.get(o.M))}")
    stats = result.bench_stats
    if stats:
        looks = f" and {stats['looks']} first looks" if stats["looks"] else ""
        print(f"benchmark: {stats['measurements']} measurements{looks} in "
              f"{stats['measure_seconds']:.1f} s, "
              f"{stats['compile_wait_seconds']:.1f} s waiting for compiles "
              f"(GPU idle {stats['idle_seconds']:.1f} s, {100 * stats['idle_share']:.0f}%), "
              f"{stats['compiled']} compiles, "
              f"{stats['worker_restarts']} worker restarts")
    if result.wall_time:
        print(wall_time_line(result.wall_time))
    for written in result.written:
        print(written.describe())
    if result.report_dir:
        print(f"report {result.report_dir}/report.md")
    for problem in result.problems:
        print(f"autotune: {problem}", file=sys.stderr)
    if result.interrupted:
        print(f"autotune: interrupted; finished trials are stored: {resume_hint()}",
              file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    if not result.written:
        where = f": see {result.report_dir}/report.md" if result.report_dir else ""
        print(f"autotune: error: no config file was written: no bucket has a config that ran "
              f"and passed the correctness check{where}", file=sys.stderr)
        sys.exit(1)
    if not result.complete:
        print(f"autotune: the buckets are not all finished: {resume_hint()}", file=sys.stderr)
        sys.exit(1)


def bucket_line(outcome, entry: Optional[dict], settled: Optional[dict]) -> str:
    """The bucket's entry as written, with its re-timed time; the first pass's best otherwise."""
    if entry is not None and settled is not None:
        return f"{settled['us']:9.2f} us  {entry}  (re-timed; {settled['source']})"
    if entry is not None:
        return f"{'':9s}    {entry}"
    best = outcome.best
    if best is None:
        return "no feasible config"
    return f"{best.us:9.2f} us  {best.config}  (first pass; no entry written)"


def wall_time_line(seconds: dict) -> str:
    """`wall time 52.3 s: start-up 8.1, search 30.2 (compile wait 5.0, re-timing alongside 9.1),
    ...`: what overlaps the search is told beside it, not added."""
    within = (*wall_clock.WAITS, wall_clock.ALONGSIDE, wall_clock.LOOP_ALONGSIDE)
    beside = ", ".join(f"{name} {seconds[name]:.1f}" for name in within
                       if seconds.get(name, 0.0) >= 0.05)  # what rounds to 0.0 is left out
    parts = [f"{name} {s:.1f}" + (f" ({beside})" if name == "search" and beside else "")
             for name, s in seconds.items() if name not in ("total", *within)]
    timed = sum(s for name, s in seconds.items() if name not in ("total", *within))
    total = seconds.get("total")
    if total is None:
        return "wall time by phase: " + ", ".join(parts)
    return f"wall time {total:.1f} s: " + ", ".join(parts + [f"other {max(0.0, total - timed):.1f}"])


def resume_hint() -> str:
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    return f"rerun the same command to resume (python -m autotune {args})"


def one_line(exc: BaseException) -> str:
    """Hydra's composition errors as one line: the problem, its cause, the options offered."""
    lines = str(exc).split("Config search path:")[0].splitlines()
    text = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("\t")]
    head = text[0].rstrip(".") if text else type(exc).__name__
    if head.endswith(":") and len(text) > 1:
        # "In 'shape/mine': ValidationError raised while composing config:" + what and where
        key = next((t.split(":", 1)[1].strip() for t in text if t.startswith("full_key:")), "")
        head = f"{head[:-1]}: {text[1].rstrip('.')}" + (f" (key {key})" if key else "")
    elif exc.__cause__ is not None and str(exc.__cause__).strip():
        head += f" ({str(exc.__cause__).strip().splitlines()[0]})"
    options = [ln.strip() for ln in lines if ln.startswith("\t")]
    return head + (f"; options: {', '.join(options)}" if options else "")


GROUPS = ("shape", "device", "search_space", "sampler", "pruner", "benchmark")


def composition_error(exc: BaseException, args: list[str]) -> Optional[str]:
    """One line for an error composing the config from `args`; None if it is not one (a bug)."""
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        return one_line(exc)
    if isinstance(exc, (ValueError, TypeError)) and _raised_in_hydra(exc):
        # e.g. `search_space=0`, `benchmark=[0]`: Hydra fails on a group given a non-name
        bad = [a for a in args if "=" in a and a.split("=", 1)[0].lstrip("+~") in GROUPS
               and not re.fullmatch(r"[A-Za-z_][\w.\-/]*", a.split("=", 1)[1])]
        return (f"{str(exc).rstrip('.') or type(exc).__name__}"
                + (f" ({', '.join(bad)}): a config group takes a preset name" if bad else ""))
    return None


def _raised_in_hydra(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}hydra{os.sep}" in tb.tb_frame.f_code.co_filename


def usage() -> str:
    """What --help prints: needs no shape or device (Hydra's own help composes the config first,
    and refused without them)."""
    from dataclasses import MISSING, fields, is_dataclass

    from autotune.config import search_space_root

    def presets(folder) -> str:
        return ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))

    settings = []
    for f in fields(Config):
        if f.default is MISSING and f.default_factory is MISSING:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()
        if is_dataclass(default) or default == "???":  # a group, or shape/device (required)
            continue
        shown = "null" if default is None else str(default).lower() if isinstance(
            default, bool) else default
        settings.append(f"{f.name}={shown}")
    root = config_root()
    groups = "\n".join(
        f"  {name + '=':<14}{presets(root / name if name != 'search_space' else search_space_root())}"
        for name in GROUPS)
    return f"""usage: python -m autotune shape=PRESET device=PRESET [key=value ...]

Tunes vLLM's fused-MoE Triton kernel configs for one MoE layer shape on one GPU and writes the
JSON file vLLM loads (outputs/configs/E=...,device_name=....json). shape and device are required.

Presets (group=name):
{groups}

Settings (key=value, shown with their defaults):
  {chr(10).join(textwrap.wrap("  ".join(settings), 94, subsequent_indent="  "))}
  and per group: shape.tp=, shape.ep=, shape.dtype=, sampler.KEY=, benchmark.KEY=, ...

First, without a GPU (about a minute):
  python -m autotune shape=tiny device=cpu
Offline, on the bundled H200 tables:
  python -m autotune shape=qwen35_tp1 device=h200 benchmark=replay benchmark.tables=bundled
Print the plan without measuring: dry_run=true. Several runs: -m shape=a,b (Hydra's multirun).
More in the README; Hydra's own options: --hydra-help."""


def cli() -> None:
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(usage())
        return
    # Hydra re-raises composition errors under HYDRA_FULL_ERROR, so they can be told in one line.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        main()
    except (HydraException, OmegaConfBaseException, ValueError, TypeError) as exc:
        line = composition_error(exc, sys.argv[1:])
        if line is None:
            raise
        print(f"autotune: error: {line}", file=sys.stderr)
        sys.exit(2)
    except JobFailed as exc:  # every job has run; each said what went wrong above
        print(f"autotune: a job of the multirun failed ({exc}); the other jobs ran",
              file=sys.stderr)
        sys.exit(exc.code)
    except KeyboardInterrupt:  # before the run started: nothing to save
        print("autotune: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    cli()
