"""`python -m autotune.check FILE_OR_FOLDER...`: validate vLLM (or SGLang-named) config files.

One line per finding, `PATH: error|warning: WHERE: WHAT` (WHERE is the file name or a batch-size
key); a file without findings gets one `PATH: ok` line. Exit status 1 when any file has an error
(vLLM 0.33 never reads it, fails on it or misreads it), 0 when there are only warnings (it runs,
but not as written). Each finding names the vLLM function whose behaviour makes it one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from autotune.files.check import Finding, check_file

USAGE = ("usage: python -m autotune.check FILE_OR_FOLDER...\n"
         "Checks vLLM fused-MoE config files (a folder: every *.json in it) against vLLM's "
         "lookup and runtime rules (vLLM 0.33.0).")


def check_paths(args: list[str]) -> list[tuple[Path, list[Finding]]]:
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
                results.append((f, check_file(f)))
    return results


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0 if args else 2
    errors = False
    for path, findings in check_paths(args):
        for f in findings:
            print(f"{path}: {f}")
        if not findings:
            print(f"{path}: ok")
        errors |= any(f.level == "error" for f in findings)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
