"""A report folder: report.md, report.json and the plots, from the collected data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autotune.files.atomic import write_atomic
from autotune.report.markdown import render_markdown
from autotune.report.plots import draw_plots


# -- writing ---------------------------------------------------------------------------------------
def write_report(data: dict[str, Any], out_dir: Path) -> list[Path]:
    """report.json, the plots, and report.md (which says when the plots could not be drawn)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "report.json"]
    write_atomic(written[0], json.dumps(data, indent=2) + "\n")
    try:
        written += draw_plots(data, out_dir)
        plots_note = None
    except ImportError:
        plots_note = ("plots not drawn: matplotlib is not installed here; `pip install "
                      "matplotlib`, then `python -m autotune.report storage=...` draws them")
    write_atomic(out_dir / "report.md", render_markdown(data, plots_note))
    return [out_dir / "report.md", *written]
