"""`python -m autotune.evaluate TABLES...`: arguments, settings from the presets, the printed summary."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from autotune.config import (
    PrunerConfig,
    SamplerConfig,
    config_root,
)
from autotune.errors import UserError
from autotune.evaluate.core import Settings, evaluate
from autotune.evaluate.stats import finite, report, summary_line
from autotune.files.grid_table import expand_table_paths
from autotune.files.output_paths import check_file
from autotune.search.samplers import PRUNERS, SAMPLERS, make_pruner


def load_settings(sampler: str, pruner: str, overrides: Sequence[str], **top: Any) -> Settings:
    """The conf/ presets for sampler and pruner, then `sampler.KEY=VALUE` / `pruner.KEY=VALUE`."""
    if sampler not in SAMPLERS:
        raise UserError(f"--sampler {sampler}: use one of {', '.join(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise UserError(f"--pruner {pruner}: use one of {', '.join(PRUNERS)}")
    nodes = {
        "sampler": OmegaConf.merge(OmegaConf.structured(SamplerConfig),
                                   OmegaConf.load(config_root() / "sampler" / f"{sampler}.yaml")),
        "pruner": OmegaConf.merge(OmegaConf.structured(PrunerConfig),
                                  OmegaConf.load(config_root() / "pruner" / f"{pruner}.yaml")),
    }
    for item in overrides:
        key, sep, value = item.partition("=")
        group, dot, name = key.partition(".")
        if not sep or not dot or group not in nodes:
            raise UserError(f"--set {item}: write sampler.KEY=VALUE or pruner.KEY=VALUE")
        known = [f.name for f in fields(SamplerConfig if group == "sampler" else PrunerConfig)]
        if name not in known:
            raise UserError(f"--set {item}: {group} has no {name}; known: {', '.join(known)}")
        try:
            OmegaConf.update(nodes[group], name, _parse_value(value), merge=False)
        except OmegaConfBaseException as exc:
            raise UserError(f"--set {item}: {str(exc).splitlines()[0]}") from None
    settings = Settings(sampler=OmegaConf.to_object(nodes["sampler"]),  # type: ignore[arg-type]
                        pruner=OmegaConf.to_object(nodes["pruner"]), **top)  # type: ignore
    if settings.neighbours not in ("none", "below", "ends", "both"):
        raise UserError(f"--neighbours {settings.neighbours}: use none, below, ends or both")
    if settings.budget < 1:
        raise UserError(f"--budget {settings.budget}: must be at least 1")
    if settings.patience is not None and settings.patience < 1:
        raise UserError(f"--patience {settings.patience}: must be at least 1")
    make_pruner(settings.pruner)  # validates the pruner's settings
    return settings


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None if text in ("null", "None") else text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        print(f"autotune.evaluate: error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = _Parser(prog="python -m autotune.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("tables", nargs="+", help="moe-grid-table/1 files, globs or folders")
    p.add_argument("--sampler", default=SamplerConfig.name,
                   help=f"preset of conf/sampler (default: {SamplerConfig.name}, as a run)")
    p.add_argument("--pruner", default="none",
                   help="preset of conf/pruner (default: none; a run's default is screen)")
    p.add_argument("--set", action="append", default=[], metavar="GROUP.KEY=VALUE",
                   help="override a sampler or pruner setting, e.g. sampler.prior_trials=0")
    p.add_argument("--budget", type=int, default=64, help="measurements per bucket (64)")
    p.add_argument("--patience", type=int, default=None, help="stop after this many "
                   "measurements without a 0.5%% gain (default: none)")
    p.add_argument("--neighbours", default="none", help="warm starts from neighbouring "
                   "buckets: none | below (tuned in ascending M) | ends (from both ends, as a run) | both")
    p.add_argument("--noise-cv", type=float, default=0.0, help="emulated measurement noise")
    p.add_argument("--full-runs", action="store_true", help="never stop a run at the table's "
                   "optimum (to count what budget and patience really spend)")
    p.add_argument("--search-space", default="vllm")
    p.add_argument("--repeats", type=int, default=20, help="seeds per table (20)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--random-repeats", type=int, default=1000,
                   help="random orders per table for the random-search baseline (1000)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--json", type=Path, default=None, help="write every run and summary here")
    p.add_argument("--quiet", action="store_true", help="print only the summary line")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.repeats < 1 or args.random_repeats < 1 or args.workers < 1:
            raise UserError("--repeats, --random-repeats and --workers must be at least 1")
        if args.noise_cv < 0:
            raise UserError(f"--noise-cv {args.noise_cv}: must be 0 or more")
        settings = load_settings(args.sampler, args.pruner, args.set, budget=args.budget,
                                 patience=args.patience, neighbours=args.neighbours,
                                 noise_cv=args.noise_cv, search_space=args.search_space,
                                 stop_at_optimum=not args.full_runs)
        if args.json:
            check_file(f"--json {args.json}", args.json)  # before the evaluation, not after
        paths = expand_table_paths(args.tables)
        result = evaluate(paths, settings, args.repeats, args.seed, args.workers,
                          args.random_repeats)
        if args.json:
            try:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(finite(result), indent=1) + "\n")
            except OSError as exc:  # checked before, yet the disk may have filled meanwhile
                raise UserError(f"--json {args.json}: cannot write it ({exc.strerror})") from None
    except UserError as exc:
        print(f"autotune.evaluate: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(report(result))
    print(summary_line(result))
    return 0

