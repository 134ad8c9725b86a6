"""The exhaustive mode's recorded tables, made here by replaying a recorded table."""

import json

from autotune.files.grid_table import GridTable
from tests.conftest import GRIDS, run_cli

SOURCE = GRIDS / "NVIDIA_H200_E256_N512_K2048_fp8block_M16.json"
KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages")


def grid_run(tmp_path, *extra):
    result = run_cli("shape=qwen35_tp1", "device=h200", "benchmark=replay",
                     f"benchmark.tables=[{SOURCE}]", "sampler=grid",
                     "search_space.params.BLOCK_SIZE_M=[16,64]", "search_space.params.GROUP_SIZE_M=[1,16]",
                     "search_space.params.num_warps=[4]",
                     "buckets=[16]", f"storage=sqlite:///{tmp_path / 's.db'}",
                     f"output_dir={tmp_path / 'configs'}", f"table_dir={tmp_path / 'tables'}",
                     "progress=false", *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [path] = (tmp_path / "tables").glob("*.json")
    assert path.name == "NVIDIA_H200_E256_N512_K2048_fp8block_M16.json"
    GridTable.load(path)  # readable by replay, so usable for offline evaluation
    return json.loads(path.read_text())


def recorded():
    rows = json.loads(SOURCE.read_text())["results"]
    return {tuple(r["config"][k] for k in KEYS): r.get("us") for r in rows}


def test_a_grid_pass_records_every_config_with_its_time(tmp_path):
    table = grid_run(tmp_path)
    source = recorded()
    assert table["format"] == "moe-grid-table/1" and table["M"] == 16
    assert len(table["results"]) == int(table["space"].split(": ")[1].split()[0])
    for row in table["results"]:
        assert row["us"] == source[tuple(row["config"][k] for k in KEYS)]
        assert "first_look" not in row


def test_with_the_screen_pruner_slow_configs_keep_their_first_look_marked(tmp_path):
    table = grid_run(tmp_path, "pruner=screen", "pruner.margin=0.2")
    rows = [r for r in table["results"] if r.get("us")]
    looked = [r for r in rows if r.get("first_look")]
    best = min(r["us"] for r in rows)
    assert looked and len(looked) < len(rows)
    assert all(r["us"] > best * 1.2 for r in looked)
    assert min(rows, key=lambda r: r["us"]).get("first_look") is None
