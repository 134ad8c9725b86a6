"""The report as markdown (report.md)."""

from __future__ import annotations

from typing import Any, Optional

from autotune import wall_clock


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
    lines = _header(data) + _wall_time(data) + _entries(data) + _between_buckets(data)
    lines += ["", "## Plots", ""]
    lines += ([plots_note] if plots_note else
              ["![latency per bucket](latency.png)", "", "![speedup per bucket](speedup.png)", "",
               "![best so far against trials, per bucket](trials.png)"])
    return "\n".join(lines) + "\n"


def _rounds(buckets: list[dict[str, Any]]) -> Optional[str]:
    """The re-timing's rounds: "3", or by batch size where they differ ("2 (M=1-512) or 3
    (M=1024-4096)"); None when nothing was re-timed."""
    by_rounds: dict[int, list[int]] = {}
    for b in buckets:
        if b.get("retimed"):
            by_rounds.setdefault(b["rounds"], []).append(b["M"])
    if len(by_rounds) <= 1:
        return next(map(str, by_rounds), None)
    spans = {r: f"M={min(ms)}" + (f"-{max(ms)}" if max(ms) > min(ms) else "")
             for r, ms in by_rounds.items()}
    return " or ".join(f"{r} ({spans[r]})"
                       for r in sorted(by_rounds, key=lambda r: min(by_rounds[r])))


def _header(data: dict[str, Any]) -> list[str]:
    """The title, what was tuned and how it was timed, the summary, and the table per bucket."""
    s, bench, summ = data["shape"], data["benchmark"], data["summary"]
    block = f" block [{s['block_shape'][0]},{s['block_shape'][1]}]" if s.get("block_shape") else ""
    file = data["compared_with"]
    rounds = _rounds(data["buckets"])
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
        + (f", {_x(summ['geomean_speedup_vs_file'])} over the file" if file else "")
        + (f"; {summ['ties']} buckets are ties (see Entries)"
           if summ.get("ties") else ""),
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

    return lines


def _wall_time(data: dict[str, Any]) -> list[str]:
    """Where the last run's wall time went, phase by phase, up to writing this report."""
    seconds = data.get("wall_time")
    if not seconds:
        return []
    lines = ["", "## Wall time of the last run", "",
             "Seconds by phase, from the process's start to the files written (this report's own "
             "time, and the plots', are in the run's wall-time line). Compile wait and worker "
             "start are the parts of the search and re-timing spent waiting for Triton "
             "compiles and for the measuring process to start (CUDA, the inputs). Re-timing "
             "alongside is the finished buckets' re-timing and checks done while the search went "
             "on, larger buckets alongside the second bucket loop's search (down from the "
             "largest batch size): both overlap the search and are not part of the total.", "",
             "| phase | seconds |", "|---|---:|"]
    lines += [f"| {'of which ' if name in wall_clock.WAITS else ''}{name} | {s:.1f} |"
              for name, s in seconds.items() if name != "total"]
    if "total" in seconds:
        lines.append(f"| **total** | **{seconds['total']:.1f}** |")
    return lines


def _entries(data: dict[str, Any]) -> list[str]:
    """Each bucket's entry, where it came from, and the notes on buckets."""
    file = data["compared_with"]
    lines = ["", "## Entries", "",
             "| M | entry | from | first pass (us) | spread | lead over the next |"
             + (" file entry (runs as) |" if file else ""),
             "|---:|---|---|---:|---:|---|" + ("---|" if file else "")]
    for b in data["buckets"]:
        source = _source(b) if b.get("source") else b.get("status", "")
        spread = f"{100 * b['tuned_spread']:.1f}%" if b.get("tuned_spread") is not None else "-"
        row = (f"| {b['M']} | {_config(b.get('entry'))} | {source} | "
               f"{_us(b.get('first_pass_us'))} | {spread} | {_lead(b.get('runner_up'))} |")
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
    return lines + _ties(data)


def _lead(r: Optional[dict]) -> str:
    if r is None:
        return "-"
    who = _source(r)
    lead = (f"{100 * r['lead']:.1f}% over" if r["lead"] >= 0
            else f"{100 * -r['lead']:.1f}% behind")
    return f"{lead} {who} ({', '.join(r['differs'])})" + (" **tie**" if r["tie"] else "")


def _source(c: dict) -> str:
    """Where a re-timed candidate came from."""
    return {"tuned": f"trial {c.get('trial')}", "vllm_default": "vLLM default",
            "group_variant": "GROUP_SIZE_M variant (re-timing)"}[c["source"]]


def _ties(data: dict[str, Any]) -> list[str]:
    """Where one process's re-timing cannot promise the order: leads under 1% or the spread."""
    ties = [b for b in data["buckets"] if (b.get("runner_up") or {}).get("tie")]
    if not ties:
        return []
    group = [b["M"] for b in ties if b["runner_up"]["differs"] == ["GROUP_SIZE_M"]]
    return ["", f"**Ties** at M = {', '.join(str(b['M']) for b in ties)}: the entry and the next "
            "re-timed config are under 1% apart, or closer than their spread over the rounds. On "
            "an H200, one process re-timed configs this close up to 1% apart from one fresh set of "
            "inputs to the next; another run may write the other config, and either serves within "
            "that margin"
            + (f". At M = {', '.join(map(str, group))} the tie is between GROUP_SIZE_M variants, "
               "whose order changed between processes by up to 3%; where a smaller GROUP_SIZE_M "
               "re-timed within the fastest's spread over the rounds, it is written" if group
               else "")
            + " (benchmarks/fidelity_h200, sessions 7 and 8)."]


def _between_buckets(data: dict[str, Any]) -> list[str]:
    """The midpoint checks: at the batch size between two keys, the neighbour's entry timed."""
    rounds = next((m["rounds"] for m in data["midpoints"]), None)
    lines = ["", "## Between buckets", "",
             "vLLM serves M tokens with the entry of the nearest key (the smaller on a tie); at "
             "the batch size halfway between two keys, the lower key's entry is timed against "
             "the upper key's" + (f" ({rounds} interleaved rounds, median)." if rounds else "."),
             ""]
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
    return lines


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
