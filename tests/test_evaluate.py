"""`python -m autotune.evaluate`: the real study code on the recorded tables, and its output."""

import json
import math
import subprocess
import sys

import pytest

from autotune.evaluate.cli import load_settings, main
from autotune.evaluate.core import Run, Settings, evaluate, load_groups, random_search
from autotune.evaluate.stats import percentile
from autotune.files.grid_table import expand_table_paths
from tests.conftest import GRIDS, bound

TABLE_M16 = GRIDS / "NVIDIA_H200_E256_N512_K2048_fp8block_M16.json"


def summary(line: str) -> dict[str, float]:
    return {k: float(v) for k, v in (item.split("=") for item in line.split())}


def run_module(*args: str, cwd=None):
    return subprocess.run([sys.executable, "-m", "autotune.evaluate", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=bound(300))


def test_evaluation_runs_the_study_on_every_table_and_ends_in_a_parseable_summary(tmp_path):
    out = tmp_path / "eval.json"
    result = run_module(str(GRIDS), "--repeats", "2", "--json", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    s = summary(lines[-1])
    assert (s["tables"], s["repeats"]) == (5, 2)
    assert 1 <= s["median_evals_to_1pct"] <= s["p90_evals_to_1pct"] <= 64
    assert 0 <= s["miss_rate"] <= 1
    assert s["random_median_evals_to_1pct"] > 50  # the needle in the haystack, as recorded
    assert sum("fp8block_M" in ln for ln in lines) == 5  # one row per table
    data = json.loads(out.read_text())  # strict JSON: a miss is null, never Infinity
    assert len(data["runs"]) == 10 and data["tables"] == 5
    for run in data["runs"]:
        # The study measured the warm starts first (default, then the prior), then the sampler.
        assert run["sources"][0] == "vllm_default"
        assert run["trace"] == sorted(run["trace"], reverse=True)  # best-so-far never worsens


# The search's quality on the bundled tables (12, three shapes) with the shipped defaults and
# seeds 0-4, as recorded on 2026-12-02 (the README's "median 2, p90 4" on all 12 tables). Worse
# fails the test; better: update these numbers and the README.
RECORDED = {"median_evals_to_1pct": 2, "p90_evals_to_1pct": 4, "miss_rate": 0.0,
            "median_evals_to_2pct": 1.5, "p90_evals_to_2pct": 4, "miss_rate_2pct": 0.0,
            "regret16": 0.0025, "regret32": 0.0, "regret64": 0.0, "mean_measurements": 7.0}


def test_the_search_is_as_good_as_recorded_on_the_bundled_tables(tmp_path):
    result = run_module("bundled", "--repeats", "5", "--quiet", cwd=tmp_path)  # from any folder
    assert result.returncode == 0, result.stderr
    s = summary(result.stdout.strip().splitlines()[-1])
    assert (s["tables"], s["repeats"]) == (12, 5)
    worse = {k: (s[k], v) for k, v in RECORDED.items() if s[k] > v}
    assert not worse, f"the search got worse than recorded (now, recorded): {worse}"
    assert s["random_median_evals_to_1pct"] == 137  # the same tables and seeds as recorded


def test_measurements_to_one_percent_are_read_off_the_recorded_times():
    paths = [TABLE_M16]
    settings = load_settings("prior_gp", "none", ["sampler.prior_trials=0"], budget=20,
                             stop_at_optimum=False)
    result = evaluate(paths, settings, repeats=1)
    run = Run(**result["runs"][0])
    best = json.loads(TABLE_M16.read_text())
    best_us = min(r["us"] for r in best["results"] if r["us"] is not None)
    assert run.best_us == best_us and len(run.trace) == 20
    n = run.evals_to(0.01)
    assert run.trace[n - 1] <= best_us * 1.01 < run.trace[n - 2]
    assert run.regret_at(64) == run.trace[-1] / best_us - 1  # a run shorter than 64: its end


def test_random_search_baseline_matches_its_expectation():
    """Drawing without replacement, k good configs of n: expected (n + 1) / (k + 1) draws."""
    group = load_groups([TABLE_M16], "vllm", 0.0)[0]
    draws = random_search(group, 16, repeats=3000, seed=1)
    table = group.tables[16]
    best = table.best()[1]
    times = [table.timings[tuple(sorted(c.items()))] for c in group.space.configs()]
    k = sum(m.ok and m.us <= best * 1.01 for m in times)
    n = len(times)
    mean = sum(draws) / len(draws)
    assert abs(mean - (n + 1) / (k + 1)) < 0.1 * (n + 1) / (k + 1)


def test_neighbour_warm_starts_come_from_the_other_tables_of_the_shape():
    paths = expand_table_paths([str(GRIDS)])
    settings = load_settings("prior_gp", "none", [], neighbours="both")
    runs = [Run(**r) for r in evaluate(paths, settings, repeats=1)["runs"]]
    by_m = {r.M: r for r in runs}
    assert by_m[16].sources[0] == "neighbour_M64"  # two octaves away, nearer than M=1
    assert by_m[1].sources[0] == "neighbour_M16"
    assert "neighbour_M256" in by_m[4096].sources


def test_two_loops_start_each_bucket_from_its_own_loops_side_only():
    # The 5 tables (M = 1, 16, 64, 256, 4096): up from 1 to 64, down from 4096 to 256.
    paths = expand_table_paths([str(GRIDS)])
    settings = load_settings("prior_gp", "none", [], neighbours="ends")
    runs = [Run(**r) for r in evaluate(paths, settings, repeats=1)["runs"]]
    by_m = {r.M: r for r in runs}
    assert sorted(by_m) == [1, 16, 64, 256, 4096]
    assert not any(s.startswith("neighbour") for s in by_m[1].sources + by_m[4096].sources)
    assert by_m[16].sources[0] == "neighbour_M1" and by_m[64].sources[0] == "neighbour_M16"
    # M=16 was tuned before M=256 (in turn: 1, 4096, 16, 256, 64), but by the other loop.
    assert by_m[256].sources[0] == "neighbour_M4096" and "neighbour_M16" not in by_m[256].sources


def test_noise_is_judged_on_the_recorded_time_of_the_config_held_best():
    settings = load_settings("tpe", "none", [], budget=16, noise_cv=0.05)
    runs = [Run(**r) for r in evaluate([TABLE_M16], settings, repeats=2)["runs"]]
    for run in runs:
        assert len(run.trace) == 16  # with noise a run never stops at the optimum
        assert all(us >= run.best_us for us in run.trace)


def test_percentile_counts_a_miss_as_never():
    assert percentile([1, 2, 3, None], 50) == 2.5
    assert percentile([1, 2, None, None], 90) == math.inf
    assert percentile([4], 90) == 4


@pytest.mark.parametrize("args, words", [
    (["/nonexistent/tables"], ["nothing found at /nonexistent/tables"]),
    ([str(GRIDS), "--set", "sampler.nope=1"], ["sampler has no nope"]),
    ([str(GRIDS), "--set", "prior_trials=1"], ["sampler.KEY=VALUE"]),
    ([str(GRIDS), "--set", "sampler.prior_trials=many"], ["sampler.prior_trials=many"]),
    ([str(GRIDS), "--sampler", "cmaes"], ["--sampler cmaes"]),
    ([str(GRIDS), "--set", "sampler.prior_source=vllm"], ["sampler.prior_source=vllm"]),
    ([str(GRIDS), "--pruner", "median"], ["--pruner median"]),
    ([str(GRIDS), "--repeats", "0"], ["--repeats"]),
    ([str(GRIDS), "--neighbours", "left"], ["--neighbours left"]),
    ([str(GRIDS), "--budget", "x"], ["--budget"]),
    ([str(GRIDS), "--search-space", "huge"], ["--search-space huge"]),
    ([], ["tables"]),
])
def test_bad_input_is_one_line_and_a_nonzero_exit(capsys, args, words):
    with pytest.raises(SystemExit) as exc:
        sys.exit(main(args))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("autotune.evaluate: error:")
    for w in words:
        assert w in err


def test_a_table_that_is_not_a_grid_table_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "table.json"
    bad.write_text('{"format": "something/else"}')
    result = run_module(str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"autotune.evaluate: error: recorded table {bad} is not a moe-grid-table/1 file"]


def test_settings_default_to_the_shipped_sampler_preset():
    assert load_settings("prior_gp", "none", []).sampler == Settings().sampler
