"""`python -m autotune.check [--device PRESET] FILE_OR_FOLDER...`: validate vLLM (or SGLang-named)
config files.

With ``--device`` (a conf/device preset: rtxpro6000, b200, ...) each entry is also compiled for
that GPU's architecture, from the shipped resource tables or on the spot (autotune.files.device_fit):
an entry that does not compile there or exceeds its shared memory is an error, one that spills
registers a warning.

One line per finding, `PATH: error|warning: WHERE: WHAT` (WHERE is the file name or a batch-size
key); a file without findings gets one `PATH: ok` line. Exit status 1 when any file has an error
(vLLM 0.33 never reads it, fails on it or misreads it), 0 when there are only warnings (it runs,
but not as written). Each finding names the vLLM function whose behaviour makes it one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from autotune.errors import UserError
from autotune.files.check import Finding, check_file
from autotune.files.device_fit import DeviceFit, load_device_preset
from autotune.files.names import parse_file_name
from autotune.problem.vllm_rules import CONFIG_KEYS

USAGE = ("usage: python -m autotune.check [--device PRESET] FILE_OR_FOLDER...\n"
         "Checks vLLM fused-MoE config files (a folder: every *.json in it) against vLLM's "
         "lookup and runtime rules (vLLM 0.33.0); --device PRESET (e.g. rtxpro6000) also "
         "compiles each entry for that GPU's architecture and reports entries that do not "
         "compile or fit there.\n"
         "Exit status: 0 no errors (warnings allowed), 1 some file has an error, 2 bad usage.")


def check_paths(args: list[str], fit: Optional[DeviceFit] = None) -> list[tuple[Path, list[Finding]]]:
    results = []
    for arg in args:
        path = Path(arg)
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        if path.is_dir() and not files:
            results.append((path, [Finding("error", path.name, "folder holds no .json file")]))
        for f in files:
            if not f.is_file():
                results.append((f, [Finding("error", f.name, "no such file")]))
            else:
                findings = check_file(f)
                if fit is not None:
                    findings += _fit_findings(f, fit)
                results.append((f, findings))
    return results


def _fit_findings(path: Path, fit: DeviceFit) -> list[Finding]:
    """The device's findings for the entries vLLM can run (malformed ones are already errors)."""
    parsed = parse_file_name(path.name)
    if parsed is None or parsed["backend"] is not None:
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []
    if not isinstance(data, dict):
        return []
    block = parsed["block_shape"] if parsed["block_shape"] and all(parsed["block_shape"]) else None
    out = []
    for key, entry in data.items():
        if key == "triton_version" or not isinstance(entry, dict):
            continue
        if all(isinstance(entry.get(k), int) and entry[k] > 0 for k in CONFIG_KEYS):
            out += fit.findings(key, entry, parsed["dtype"], tuple(block) if block else None)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0 if args else 2
    fit = None
    if args[0] == "--device" or args[0].startswith("--device="):
        name, args = (args[1] if len(args) > 1 else "", args[2:]) if args[0] == "--device" \
            else (args[0].split("=", 1)[1], args[1:])
        try:
            fit = DeviceFit(load_device_preset(name))
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if not args:
            print(USAGE, file=sys.stderr)
            return 2
    errors = False
    for path, findings in check_paths(args, fit):
        for f in findings:
            print(f"{path}: {f}")
        if not findings:
            print(f"{path}: ok")
        errors |= any(f.level == "error" for f in findings)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
