"""The run's report: per bucket, the written entry against vLLM's default config (and an existing
file's entry), what the search spent, and the check between buckets; as markdown, JSON and PNG.

It is made from the storage alone, so it is the same at the end of a run as later:

    python -m autotune.report storage=sqlite:///outputs/studies.db [output_dir=outputs/configs]
                              [study=TEXT]

writes `<output_dir>/<config file name without .json>.report/` for every run the storage holds:
report.md, report.json, latency.png, speedup.png and trials.png.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune import vllm_rules
from autotune.consolidate import CONSOLIDATION, MIDPOINT, existing_studies
from autotune.errors import UserError
from autotune.formats import config_file_name, write_atomic
from autotune.space import KERNEL_PARAMS, SearchSpace

FORMAT = "autotune-report/1"
PLOTS = ("latency.png", "speedup.png", "trials.png")


# -- the data --------------------------------------------------------------------------------------
def collect(storage: optuna.storages.BaseStorage, study_names: list[str],
            storage_url: str = "") -> dict[str, Any]:
    """The report's data, from the studies of one run (one study per bucket)."""
    buckets_by_name = {_bucket_of(name): name for name in study_names}
    studies = existing_studies(storage, buckets_by_name)
    if not studies:
        raise UserError(f"storage {storage_url or ''} holds none of the studies "
                        f"{study_names[0]} ...; nothing to report")
    attrs = next(iter(studies.values())).user_attrs
    shape, device = attrs.get("shape", {}), attrs.get("device", "")
    block = tuple(shape["block_shape"]) if shape.get("block_shape") else None
    buckets = [_bucket(M, buckets_by_name[M], studies.get(M), shape)
               for M in sorted(buckets_by_name)]
    midpoints = _midpoints(studies, buckets)
    compared = next((b["file_name"] for b in buckets if b.get("file_name")), None)
    return {
        "format": FORMAT,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_file": config_file_name(shape["E"], shape["N"], device, shape["dtype"], block),
        "shape": shape,
        "device": device,
        "search_space": attrs.get("search_space", {}).get("name"),
        "benchmark": attrs.get("benchmark", {}),
        "storage": storage_url,
        "studies": study_names[0].rsplit("/M=", 1)[0] + "/M=*",
        "compared_with": compared,
        "buckets": buckets,
        "midpoints": midpoints,
        "summary": _summary(buckets, midpoints),
    }


def _bucket_of(study_name: str) -> int:
    return int(study_name.rsplit("/M=", 1)[1])


def _bucket(M: int, name: str, study: Optional[optuna.Study], shape: dict) -> dict[str, Any]:
    if study is None:
        return {"M": M, "study": name, "entry": None, "status": "not tuned", "trials": 0,
                "pruned": 0, "infeasible": 0, "excluded": 0, "seconds": 0.0, "history": []}
    trials = study.get_trials(deepcopy=False)
    measured = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("measured")]
    history = [t.user_attrs.get("us") for t in measured]
    out: dict[str, Any] = {
        "M": M, "study": name,
        "trials": len(measured),
        "pruned": sum(1 for t in trials if t.state == TrialState.PRUNED),
        "infeasible": sum(1 for us in history if us is None),
        "excluded": sum(1 for t in trials if "excluded" in t.user_attrs),
        "history": history,
    }
    kind = study.user_attrs.get("benchmark", {}).get("kind", "benchmark")
    cons = study.user_attrs.get(CONSOLIDATION)
    extra_seconds = sum(study.user_attrs.get(k, {}).get("seconds", 0.0)
                        for k in (CONSOLIDATION, MIDPOINT))
    out["seconds"] = _busy_seconds(trials) + extra_seconds
    if cons is None:
        out.update(_first_pass(M, measured, shape))
    else:
        out.update(_consolidated(cons, kind, len(measured)))
    out["speedup_vs_default"] = _ratio(out.get("default_us"), out.get("tuned_us"))
    out["speedup_vs_file"] = _ratio(out.get("file_us"), out.get("tuned_us"))
    return out


def _consolidated(cons: dict, kind: str, measured: int) -> dict[str, Any]:
    entry, default, file = cons["entry"], cons["default"], cons["file"]
    out: dict[str, Any] = {
        "retimed": True, "rounds": cons["rounds"],
        "entry": entry and {k: entry["config"][k] for k in KERNEL_PARAMS},
        "source": entry and entry["source"], "trial": entry and entry["trial"],
        "tuned_us": entry and entry["us"], "tuned_spread": entry and entry["spread"],
        "first_pass_us": entry and entry["first_pass_us"],
        "default_config": default["config"], "default_us": default["us"],
        "default_note": _note(default),
        "candidates": cons["candidates"], "skipped": cons["skipped"],
    }
    if entry is None:
        out["status"] = "no config passed" if cons["candidates"] else "no feasible config"
        out["verification"] = "n/a"
    else:
        out["status"] = "written"
        out["verified"] = entry.get("verified")
        out["verification"] = "passed" if entry.get("verified") else f"not verified ({kind})"
    if file is not None:
        out.update(file_name=file["file"], file_key=file["key"], file_config=file["config"],
                   file_runs_as=file["runs_as"], file_us=file["us"], file_note=_note(file))
    if cons["measured"] != measured:
        out["note"] = (f"re-timed when the study held {cons['measured']} trials, it now holds "
                       f"{measured}: rerun the same command to re-time")
    return out


def _first_pass(M: int, measured: list[FrozenTrial], shape: dict) -> dict[str, Any]:
    """A bucket whose run stopped before re-timing: its study's own numbers, said as such."""
    ok = [t for t in measured if t.user_attrs.get("us") is not None]
    best = min(ok, key=lambda t: t.user_attrs["us"]) if ok else None
    block = tuple(shape["block_shape"]) if shape.get("block_shape") else None
    default = vllm_rules.default_config(M, shape["E"], shape["dtype"], block)
    seen = {SearchSpace.key({k: t.user_attrs["config"][k] for k in KERNEL_PARAMS}): t
            for t in measured}
    d = seen.get(SearchSpace.key(default))
    return {
        "retimed": False, "entry": None, "status": "not re-timed (not written)",
        "tuned_us": best.user_attrs["us"] if best else None,
        "first_pass_us": best.user_attrs["us"] if best else None,
        "default_config": default,
        "default_us": d.user_attrs.get("us") if d else None,
        "default_note": None if d and d.user_attrs.get("us") else "not measured",
        "verification": "n/a",
        "note": "first-pass timings: the run stopped before its finalists were re-timed",
    }


def _note(timing: dict) -> Optional[str]:
    return None if timing["us"] is not None else timing.get("reason", "not timed")


def _ratio(slow: Optional[float], fast: Optional[float]) -> Optional[float]:
    return slow / fast if slow and fast else None


def _busy_seconds(trials: list[FrozenTrial]) -> float:
    """Wall time the trials were running, overlaps counted once and pauses between runs not."""
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials
                   if t.datetime_start and t.datetime_complete)
    total, end = 0.0, None
    for s, e in spans:
        if end is None or s > end:
            total += (e - s).total_seconds()
            end = e
        elif e > end:
            total += (e - end).total_seconds()
            end = e
    return total


def _midpoints(studies: dict[int, optuna.Study], buckets: list[dict]) -> list[dict]:
    """The stored midpoint checks that are about the entries as they are now."""
    written = [b for b in buckets if b.get("entry")]
    out = []
    for a, b in zip(written, written[1:]):
        r = studies[a["M"]].user_attrs.get(MIDPOINT)
        if r and r["served_by"] == a["M"] and r["neighbour"] == b["M"] \
                and r["inputs"]["served"] == a["entry"] and r["inputs"]["neighbour"] == b["entry"]:
            out.append({k: v for k, v in r.items() if k != "inputs"})
    return out


def _summary(buckets: list[dict], midpoints: list[dict]) -> dict[str, Any]:
    def geomean(key: str) -> Optional[float]:
        values = [b[key] for b in buckets if b.get(key) and b.get("entry")]
        return math.exp(sum(map(math.log, values)) / len(values)) if values else None

    return {
        "buckets": len(buckets),
        "entries": sum(1 for b in buckets if b.get("entry")),
        "trials": sum(b["trials"] for b in buckets),
        "seconds": sum(b["seconds"] for b in buckets),
        "geomean_speedup_vs_default": geomean("speedup_vs_default"),
        "geomean_speedup_vs_file": geomean("speedup_vs_file"),
        "midpoints_neighbour_better": sum(1 for m in midpoints if m["neighbour_better"]),
    }


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


def _us(v: Optional[float], note: Optional[str] = None) -> str:
    return f"{v:.2f}" if v is not None else f"n/a ({note})" if note else "n/a"


def _x(v: Optional[float]) -> str:
    return f"{v:.2f}x" if v is not None else "n/a"


def _config(c: Optional[dict]) -> str:
    if not c:
        return "-"
    return (f"M{c['BLOCK_SIZE_M']} N{c['BLOCK_SIZE_N']} K{c['BLOCK_SIZE_K']} G{c['GROUP_SIZE_M']} "
            f"w{c['num_warps']} s{c['num_stages']}")


def render_markdown(data: dict[str, Any], plots_note: Optional[str] = None) -> str:
    s, bench, summ = data["shape"], data["benchmark"], data["summary"]
    block = f" block [{s['block_shape'][0]},{s['block_shape'][1]}]" if s.get("block_shape") else ""
    file = data["compared_with"]
    rounds = next((b["rounds"] for b in data["buckets"] if b.get("retimed")), None)
    lines = [
        f"# Tuned fused-MoE config: `{data['config_file']}`",
        "",
        f"- Shape: {s.get('model', '')} (tp={s.get('tp')}, ep={s.get('ep')}): E={s['E']} "
        f"N={s['N']} K={s['K']} top-{s['topk']} {s['dtype']}{block}",
        f"- Device: {data['device']}; benchmark: "
        + ", ".join(f"{k}={v}" for k, v in bench.items()),
        f"- Timed as vLLM runs the kernel: {_fidelity(bench, s['dtype'])}",
        f"- Search space: {data['search_space']}; studies `{data['studies']}` in "
        f"`{data['storage']}`",
        "- Latency: microseconds per MoE call; trials are measurements, excluded the proposals "
        "that the search space's constraints dropped unmeasured. "
        + (("The best trials, vLLM's default config and the file's entry" if file else
            "The best trials and vLLM's default config")
           + f" were re-timed together in {rounds} interleaved rounds (median)."
           if rounds else "First-pass timings (the finalists were not re-timed).")
        + _TIMING_CAVEAT.get(bench.get("kind", ""), ""),
        "- Compared with: vLLM's default config (what vLLM runs without a file)"
        + (f" and `{file}` (the entry vLLM takes from it for M, as the kernel runs it)"
           if file else ""),
        f"- Summary: {summ['entries']} of {summ['buckets']} buckets written; {summ['trials']} "
        f"trials in {summ['seconds']:.1f} s; geometric-mean speedup "
        f"{_x(summ['geomean_speedup_vs_default'])} over vLLM's default"
        + (f", {_x(summ['geomean_speedup_vs_file'])} over the file" if file else ""),
        "",
        "| M | tuned (us) | vLLM default (us) | speedup |"
        + (" file (us) | speedup |" if file else "")
        + " verified | trials | pruned | infeasible | excluded | time (s) |",
        "|---:|---:|---:|---:|" + ("---:|---:|" if file else "") + "---|---:|---:|---:|---:|---:|",
    ]
    for b in data["buckets"]:
        row = (f"| {b['M']} | {_us(b.get('tuned_us'))} | "
               f"{_us(b.get('default_us'), b.get('default_note'))} | "
               f"{_x(b.get('speedup_vs_default'))} |")
        if file:
            row += f" {_us(b.get('file_us'), b.get('file_note'))} | {_x(b.get('speedup_vs_file'))} |"
        row += (f" {b.get('verification', 'n/a')} | {b['trials']} | {b['pruned']} | "
                f"{b['infeasible']} | {b['excluded']} | {b['seconds']:.1f} |")
        lines.append(row)

    lines += ["", "## Entries", "",
              "| M | entry | from | first pass (us) | spread |" + (" file entry (runs as) |"
                                                                   if file else ""),
              "|---:|---|---|---:|---:|" + ("---|" if file else "")]
    for b in data["buckets"]:
        source = {"tuned": f"trial {b.get('trial')}", "vllm_default": "vLLM default"}.get(
            b.get("source") or "", b.get("status", ""))
        spread = f"{100 * b['tuned_spread']:.1f}%" if b.get("tuned_spread") is not None else "-"
        row = (f"| {b['M']} | {_config(b.get('entry'))} | {source} | "
               f"{_us(b.get('first_pass_us'))} | {spread} |")
        if file:
            fk = f"key {b['file_key']}: {_config(b['file_runs_as'])}" if b.get("file_key") else "-"
            if b.get("file_config") and b["file_config"] != b.get("file_runs_as"):
                fk += f" (written BLOCK_SIZE_K={b['file_config']['BLOCK_SIZE_K']})"
            row += f" {fk} |"
        lines.append(row)
    notes = [f"- M={b['M']}: {b['note']}" for b in data["buckets"] if b.get("note")]
    notes += [f"- M={b['M']}: trial {sk['trial']} ({_us(sk['us'])} us) passed over: {sk['reason']}"
              for b in data["buckets"] for sk in b.get("skipped", [])]
    if notes:
        lines += ["", *notes]

    lines += ["", "## Between buckets", "",
              "vLLM serves M tokens with the entry of the nearest key (the smaller on a tie); at "
              "the batch size halfway between two keys, the lower key's entry is timed against "
              "the upper key's.", ""]
    if data["midpoints"]:
        lines += ["| M | served by entry of | us | entry of | us | finding |",
                  "|---:|---:|---:|---:|---:|---|"]
        for m in data["midpoints"]:
            lines.append(f"| {m['M']} | {m['served_by']} | "
                         f"{_us(m['served']['us'], m['served'].get('reason'))} | {m['neighbour']} | "
                         f"{_us(m['neighbour_timing']['us'], m['neighbour_timing'].get('reason'))}"
                         f" | {_midpoint_finding(m)} |")
    else:
        lines.append("No midpoint was checked.")
    lines += ["", "## Plots", ""]
    lines += ([plots_note] if plots_note else
              ["![latency per bucket](latency.png)", "", "![speedup per bucket](speedup.png)", "",
               "![best so far against trials, per bucket](trials.png)"])
    return "\n".join(lines) + "\n"


_L2_MODES = {
    "hot": "hot L2 (the same weights in every call, as vLLM's tuner: at small M they are served "
           "from L2, unlike in serving)",
    "cold": "cold L2 (the calls rotate over copies of the weights)",
    "layers": "layer stack (each call is another layer with its own weights and routing, so "
              "weights come from HBM as in a forward pass; time per layer)",
}


def _fidelity(bench: dict[str, Any], dtype: str) -> str:
    """Which vLLM's rules were timed, the kernel variant, the L2 mode, and what was not timed."""
    if bench.get("kind") not in ("gpu", "interpreter"):
        return "as the recorded tables were timed (see each table's `timing`)."
    swap = ("SWAP_AB where vLLM sets it (fp8 on capability 9.0, BLOCK_SIZE_M < 64, "
            "BLOCK_SIZE_N >= 64)" if dtype == "fp8_w8a8" else f"no SWAP_AB (vLLM never swaps {dtype})")
    if bench.get("swap_ab") in ("on", "off"):
        swap = f"SWAP_AB forced {bench['swap_ab']} (benchmark.swap_ab; not what vLLM runs)"
    version = bench.get("vllm", "an unrecorded version")
    where = ("the Triton interpreter on the CPU" if bench["kind"] == "interpreter"
             else _L2_MODES.get(bench.get("l2", "hot"), str(bench.get("l2"))))
    return (f"vLLM {version}'s rules, {swap}, BLOCK_SIZE_K clamped to the quantization block, "
            f"vLLM's small-M shortcut; {where}. "
            "vLLM's tensor-descriptor path (`VLLM_TRITON_USE_TD=1`: unquantized weights on "
            "capability >= 10.0) was not timed.")


_TIMING_CAVEAT = {
    "interpreter": " These are the Triton interpreter's timings on the CPU: they exercise the "
                   "whole pipeline and say nothing about GPU speed.",
    "replay": " These are replayed from recorded GPU tables: a config the tables lack is n/a.",
}


def _midpoint_finding(m: dict) -> str:
    if m["served"].get("reason") == "same config":
        return "same config on both sides"
    if m["neighbour_better"] is None:
        return "n/a"
    if m["neighbour_better"]:
        gain = m["served"]["us"] / m["neighbour_timing"]["us"] - 1
        return f"entry of {m['neighbour']} is {100 * gain:.1f}% faster here"
    return "served entry holds"


# -- plots -----------------------------------------------------------------------------------------
def draw_plots(data: dict[str, Any], out_dir: Path) -> list[Path]:
    """latency.png, speedup.png, trials.png. Figure objects without pyplot: no global state, and
    the Agg canvas, so no display is needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    buckets = [b for b in data["buckets"] if b["trials"]]
    Ms = [b["M"] for b in buckets]
    file = data["compared_with"]
    paths = [out_dir / name for name in PLOTS]

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    series = [("tuned", "tuned_us", "o-"), ("vLLM default", "default_us", "s--")]
    if file:
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
    fig.savefig(paths[0], dpi=120)

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    keys = [("over vLLM default", "speedup_vs_default")] + (
        [("over file", "speedup_vs_file")] if file else [])
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
    fig.savefig(paths[1], dpi=120)

    cols = min(4, max(1, len(buckets)))
    rows = max(1, math.ceil(len(buckets) / cols))
    fig = Figure(figsize=(3 * cols, 2.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
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
    fig.savefig(paths[2], dpi=100)
    return paths


# -- command line ----------------------------------------------------------------------------------
USAGE = ("usage: python -m autotune.report [storage=URL_OR_FILE] [output_dir=DIR] [study=TEXT]\n"
         "Writes <output_dir>/<config file>.report/ (report.md, report.json, PNG plots) for each "
         "run in the storage\n(default storage=outputs/studies.db, output_dir=outputs/configs); "
         "study= keeps the runs whose study names contain TEXT.")


def runs_in(storage: optuna.storages.BaseStorage, text: str = "") -> dict[str, list[str]]:
    """The storage's autotune runs: study-name prefix -> the study names of its buckets."""
    runs: dict[str, list[str]] = {}
    for s in storage.get_all_studies():
        prefix, sep, M = s.study_name.rpartition("/M=")
        if sep and M.isdigit() and "shape" in s.user_attrs and text in s.study_name:
            runs.setdefault(prefix, []).append(s.study_name)
    return runs


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    try:
        opts = _parse(args)
        written = report_storage(**opts)
    except UserError as exc:
        print(f"autotune.report: error: {exc}", file=sys.stderr)
        return exc.exit_code
    for path in written:
        print(f"wrote {path}")
    return 0


def _parse(args: list[str]) -> dict[str, str]:
    opts = {"storage": "outputs/studies.db", "output_dir": "outputs/configs", "study": ""}
    for a in args:
        key, sep, value = a.partition("=")
        if not sep or key not in opts:
            raise UserError(f"{a}: give key=value with key one of {', '.join(opts)}")
        opts[key] = value
    return opts


def report_storage(storage: str, output_dir: str, study: str = "") -> list[Path]:
    from autotune.storage import open_storage, sqlite_path

    url = storage if "://" in storage else f"sqlite:///{Path(storage).resolve()}"
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise UserError(f"storage={storage}: no such file; give the storage the run used")
    opened = open_storage(url)
    runs = runs_in(opened, study)
    if not runs:
        raise UserError(f"storage={storage} holds no autotune studies"
                        + (f" whose names contain {study!r}" if study else ""))
    reports: dict[str, tuple[str, dict]] = {}
    for prefix, names in sorted(runs.items()):
        data = collect(opened, sorted(names, key=_bucket_of), storage_url=url)
        if data["config_file"] in reports:
            raise UserError(f"storage={storage} holds two runs for {data['config_file']}: "
                            f"{reports[data['config_file']][0]} and {prefix}; pick one with "
                            f"study=<part of its name>")
        reports[data["config_file"]] = (prefix, data)
    written = []
    for config_file, (_, data) in reports.items():
        out = Path(output_dir) / (config_file[:-len(".json")] + ".report")
        write_report(data, out)
        written.append(out / "report.md")
    return written


if __name__ == "__main__":
    sys.exit(main())
