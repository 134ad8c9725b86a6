"""The run's report: per bucket, the written entry against vLLM's default config (and an existing
file's entry), what the search spent, and the check between buckets; as markdown, JSON and PNG.

It is made from the storage alone, so it is the same at the end of a run as later:

    python -m autotune.report storage=sqlite:///outputs/studies.db [output_dir=outputs/configs]
                              [study=TEXT]

writes `<output_dir>/<config file name without .json>.report/` for every run the storage holds:
report.md, report.json, latency.png, speedup.png and trials.png.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from autotune.errors import UserError
from autotune.report.data import collect, runs_in
from autotune.report.write import write_report
from autotune.study.names import StudyName

# -- command line ----------------------------------------------------------------------------------
USAGE = ("usage: python -m autotune.report [storage=URL_OR_FILE] [output_dir=DIR] [study=TEXT]\n"
         "Writes <output_dir>/<config file>.report/ (report.md, report.json, PNG plots) for each "
         "run in the storage\n(default storage=outputs/studies.db, output_dir=outputs/configs); "
         "study= keeps the runs whose study names contain TEXT.")


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
    from autotune.study.storage import open_storage, sqlite_path

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
        data = collect(opened, sorted(names, key=lambda n: StudyName.bucket(n).M), storage_url=url)
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

