"""Summarize the shipped compiled-resource tables against the shared-memory estimate.

Per table: tile configs, how many do not compile, how many exceed the architecture's shared
memory compiled and by the estimate (autotune.problem.space.shared_memory_bytes), where the two disagree,
and how many spill registers.

    PYTHONPATH=. python benchmarks/resources/summarize.py
"""

import json

from autotune.problem.resources import TABLE_DIR, load_table
from autotune.problem.space import shared_memory_bytes


def main() -> None:
    print("| table | Triton | tiles | do not compile | over the limit compiled | by the estimate "
          "| estimate drops, fits | estimate admits, does not fit | spill |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in sorted(TABLE_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        block = tuple(data["block_shape"]) if data["block_shape"] else None
        arch = int(data["target"][3:])
        table = load_table((arch // 10, arch % 10), data["dtype"], block)
        limit = table.shared_limit
        errors = over = est_over = est_only = real_only = spills = 0
        for row in data["configs"]:
            compiled = table.lookup(row)
            errors += compiled.error is not None
            real = compiled.reason_not_run(limit, table.target) is not None
            est = shared_memory_bytes(row, data["dtype"]) > limit
            over += real and compiled.error is None
            est_over += est
            est_only += est and not real
            real_only += real and not est
            spills += bool(compiled.local)
        print(f"| {table.name} | {table.triton_version} | {len(table)} | {errors} | {over} | "
              f"{est_over} | {est_only} | {real_only} | {spills} |")


if __name__ == "__main__":
    main()
