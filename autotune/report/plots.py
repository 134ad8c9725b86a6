"""The report's plots (latency.png, speedup.png, trials.png); matplotlib is loaded only here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

PLOTS = ("latency.png", "speedup.png", "trials.png")


# -- plots -----------------------------------------------------------------------------------------
def draw_plots(data: dict[str, Any], out_dir: Path) -> list[Path]:
    """latency.png, speedup.png, trials.png. Figure objects without pyplot: no global state, and
    the Agg canvas, so no display is needed."""
    buckets = [b for b in data["buckets"] if b["trials"]]
    paths = [out_dir / name for name in PLOTS]
    _latency(data, buckets).savefig(paths[0], dpi=120)
    _speedup(data, buckets).savefig(paths[1], dpi=120)
    _trials(buckets).savefig(paths[2], dpi=100)
    return paths


def _figure(layout: Optional[str] = "constrained", **kwargs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(layout=layout, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _latency(data: dict[str, Any], buckets: list[dict]):
    """Each bucket's re-timed entry, vLLM's default and the compared file, against M."""
    Ms = [b["M"] for b in buckets]
    fig = _figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    series = [("tuned", "tuned_us", "o-"), ("vLLM default", "default_us", "s--")]
    if data["compared_with"]:
        series.append(("file", "file_us", "^:"))
    for label, key, style in series:
        pts = [(b["M"], b[key]) for b in buckets if b.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), style, label=label)
    ax.set(xscale="log", yscale="log", xlabel="batch size M (tokens)",
           ylabel="microseconds per MoE call", title=data["config_file"][:-5])
    ax.title.set_fontsize(8)
    ax.set_xticks(Ms, [str(m) for m in Ms], fontsize=7)
    if ax.get_legend_handles_labels()[0]:  # no bucket with a time: nothing to label
        ax.legend()
    return fig


def _speedup(data: dict[str, Any], buckets: list[dict]):
    """The written entry's speedup over vLLM's default (and the compared file), per bucket."""
    Ms = [b["M"] for b in buckets]
    fig = _figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    keys = [("over vLLM default", "speedup_vs_default")] + (
        [("over file", "speedup_vs_file")] if data["compared_with"] else [])
    width = 0.8 / len(keys)
    for i, (label, key) in enumerate(keys):
        ax.bar([j + i * width for j in range(len(buckets))],
               [b.get(key) or 0.0 for b in buckets], width, label=label)
    ax.axhline(1.0, color="black", linewidth=0.8)
    values = [b[k] for _, k in keys for b in buckets if b.get(k)] or [1.0]
    ax.set_ylim(min(0.9, min(values) - 0.05), max(1.1, max(values) + 0.05))
    ax.set_xticks([j + width * (len(keys) - 1) / 2 for j in range(len(buckets))],
                  [str(m) for m in Ms], fontsize=7)
    ax.set(xlabel="batch size M (tokens)", ylabel="speedup of the written entry")
    ax.legend()
    return fig


def _trials(buckets: list[dict]):
    """The best time so far against the trials, one panel per bucket."""
    from matplotlib.ticker import MaxNLocator

    cols = min(4, max(1, len(buckets)))
    rows = max(1, math.ceil(len(buckets) / cols))
    # Margins set by hand: the constrained layout's solver took half of the report's time with
    # 18 panels (1.9 of 3.8 s on a 2-core CPU).
    width, height = 3 * cols, 2.4 * rows
    fig = _figure(layout=None, figsize=(width, height))
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=0.6 / height,
                        top=1 - 0.3 / height, wspace=0.3, hspace=0.55)
    for i, b in enumerate(buckets):
        ax = fig.add_subplot(rows, cols, i + 1)
        best, curve = math.inf, []
        for us in b["history"]:
            best = min(best, us) if us is not None else best
            curve.append(best if best < math.inf else None)
        ax.plot(range(1, len(curve) + 1), [math.nan if c is None else c for c in curve],
                drawstyle="steps-post", label="best so far")
        if b.get("default_us") is not None:
            ax.axhline(b["default_us"], color="gray", linestyle="--", label="vLLM default")
        ax.set_title(f"M={b['M']}", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are whole numbers
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="y", useOffset=False)
        if i == 0:
            ax.legend(fontsize=7)
    fig.supxlabel("trials (measurements)")
    fig.supylabel("microseconds")
    return fig
