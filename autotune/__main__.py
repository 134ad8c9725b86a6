"""`python -m autotune shape=<preset> device=<preset> [key=value ...]`: tune and write the file.

A thin Hydra entry: compose the config, build the plan (or print it for dry_run=true), run it.
Mistakes a user can fix end in one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from autotune.config import Config, config_root, register_configs
from autotune.errors import UserError

register_configs()


@hydra.main(config_path=str(config_root()), config_name="config", version_base="1.3")
def main(dict_cfg: DictConfig) -> None:
    try:
        cfg: Config = OmegaConf.to_object(dict_cfg)  # type: ignore[assignment]
        run(cfg)
    except UserError as exc:
        print(f"autotune: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def run(cfg: Config) -> None:
    from autotune.plan import build_plan

    plan = build_plan(cfg, probe_gpu=not cfg.dry_run)
    if cfg.dry_run:
        print(plan.describe())
        return
    from autotune.tune import tune

    result = tune(plan)
    for o in result.outcomes:
        best = o.best
        line = (f"{best.us:9.2f} us  {best.config}" if best else "no feasible config")
        print(f"M={o.M:<5d} {len(o.records):3d} measured ({o.new_measurements} new)  {line}")
    stats = result.bench_stats
    if stats:
        print(f"benchmark: {stats['measurements']} measurements in {stats['measure_seconds']:.1f} s, "
              f"{stats['compile_wait_seconds']:.1f} s waiting for compiles "
              f"(GPU idle {100 * stats['idle_share']:.0f}%), {stats['compiled']} compiles, "
              f"{stats['worker_restarts']} worker restarts")
    for path in result.files:
        print(f"wrote {path}")
    if result.report_dir:
        print(f"report {result.report_dir}/report.md")
    if result.interrupted:
        print("interrupted: finished trials are stored; rerun the same command to resume",
              file=sys.stderr)
        sys.exit(130)


def one_line(exc: BaseException) -> str:
    """Hydra's composition errors as one line: the problem, its cause, the options offered."""
    lines = str(exc).split("Config search path:")[0].splitlines()
    text = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("\t")]
    head = text[0].rstrip(".") if text else type(exc).__name__
    if exc.__cause__ is not None and str(exc.__cause__).strip():
        head += f" ({str(exc.__cause__).strip().splitlines()[0]})"
    options = [ln.strip() for ln in lines if ln.startswith("\t")]
    return head + (f"; options: {', '.join(options)}" if options else "")


def cli() -> None:
    # Hydra re-raises composition errors under HYDRA_FULL_ERROR, so they can be told in one line.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        main()
    except (HydraException, OmegaConfBaseException) as exc:
        print(f"autotune: error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
