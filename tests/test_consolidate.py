"""Finalists: re-timed interleaved with vLLM's default (and a shipped file's entry), a correctness
gate, no entry the kernel would rewrite, midpoints between buckets, and nothing timed twice."""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import optuna
import pytest

from autotune.bench.protocol import Measurement
from autotune.consolidate.finalists import WIDENED_MOST, pick_finalists
from autotune.consolidate.retime import retime, rounds_at
from autotune.consolidate.ties import writing_order
from autotune.errors import UserError
from autotune.files.check import check_entry, check_file
from autotune.files.vllm import read_entries
from autotune.plan import build_plan
from autotune.problem import vllm_rules
from autotune.problem.space import SearchSpace
from autotune.run.tune import tune
from autotune.search.prior import nearest_config
from autotune.study.records import Record, StudyAttr, read_records
from tests.conftest import GRIDS, VLLM_CONFIGS, compose, replay_args, replay_pick

FILE = "E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"
BLOCK = (128, 128)


def table(M: int, grids: Path = GRIDS) -> dict[tuple, float]:
    data = json.loads((grids / f"NVIDIA_H200_E256_N512_K2048_fp8block_M{M}.json").read_text())
    return {SearchSpace.key(r["config"]): r["us"] for r in data["results"]}


class Recording:
    """The real replay benchmarker, with every call written down (and, on request, a config whose
    output is declared wrong, or a Ctrl-C after some measurements)."""

    def __init__(self, inner, wrong=(), interrupt=lambda M, done: False):
        self.inner, self.wrong, self.interrupt = inner, list(wrong), interrupt
        self.measured: list[tuple[int, tuple]] = []
        self.verified: list[tuple[int, tuple]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def measure(self, config, M):
        if self.interrupt(M, len(self.measured)):
            raise KeyboardInterrupt
        self.measured.append((M, SearchSpace.key(config)))
        return self.inner.measure(config, M)

    def verify(self, config, M):
        self.verified.append((M, SearchSpace.key(config)))
        if SearchSpace.key(config) in self.wrong:
            return False
        return self.inner.verify(config, M)


def plan_for(tmp_path, *overrides):
    return build_plan(compose(*replay_args(tmp_path, *overrides)))


def studies(plan) -> dict[int, optuna.Study]:
    storage = optuna.storages.RDBStorage(plan.storage)
    return {M: optuna.load_study(study_name=plan.study_name(M), storage=storage)
            for M in plan.buckets}


def test_retime_interleaves_rounds_and_takes_the_median(tmp_path):
    plan = plan_for(tmp_path)
    bench = Recording(plan.replay)
    configs = [vllm_rules.default_config(M, 256, "fp8_w8a8", BLOCK) for M in (1, 16, 64)]
    timings = retime(bench, configs, 16, rounds=3)
    keys = [SearchSpace.key(c) for c in configs]
    a, b, c = keys
    assert [k for _, k in bench.measured] == [a, b, c, b, c, a, c, a, b]  # A B C, B C A, C A B
    for config, t in zip(configs, timings):
        recorded = table(16)[SearchSpace.key(config)]
        assert t["us"] == recorded and t["samples"] == [recorded] * 3 and t["spread"] == 0.0


def test_a_contender_that_can_no_longer_win_stops_being_retimed_a_baseline_never_does(tmp_path):
    plan = plan_for(tmp_path)
    bench = Recording(plan.replay)
    tile = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_K": 128, "num_stages": 3}
    best = {**tile, "BLOCK_SIZE_N": 64, "GROUP_SIZE_M": 1, "num_warps": 4}
    close = {**best, "GROUP_SIZE_M": 32}  # 0.4% slower in the recorded table
    slow = {**tile, "BLOCK_SIZE_N": 128, "GROUP_SIZE_M": 32, "num_warps": 8}  # 3.0% slower
    default = vllm_rules.default_config(16, 256, "fp8_w8a8", BLOCK)  # 2.3% slower
    configs = [best, close, slow, default]
    timings = retime(bench, configs, 16, rounds=5, contenders=[0, 1, 2])
    keys = [SearchSpace.key(c) for c in configs]
    # Rounds 1 and 2 as always; from the third on, the slow contender is out of the contest.
    assert [k for _, k in bench.measured][:8] == [keys[i] for i in (0, 1, 2, 3, 1, 2, 3, 0)]
    assert [sum(k == key for _, k in bench.measured) for key in keys] == [5, 5, 2, 5]
    assert timings[2] == {"us": table(16)[keys[2]], "spread": 0.0, "samples": [table(16)[keys[2]]] * 2}
    assert min(timings, key=lambda t: t["us"]) is timings[0]


def test_unset_rounds_are_two_up_to_m512_and_three_above_and_the_report_says_so(tmp_path):
    plan = plan_for(tmp_path, "trials=4", "buckets=[256,4096]", "pruner=none")
    assert plan.cfg.retime_rounds is None
    tune(plan)
    for M, rounds in ((256, 2), (4096, 3)):
        cons = studies(plan)[M].user_attrs[StudyAttr.CONSOLIDATION]
        assert cons["rounds"] == cons["inputs"]["rounds"] == rounds == rounds_at(M, None)
        assert len(cons["default"]["samples"]) == rounds  # vLLM's default takes every round
        assert max(len(c["samples"]) for c in cons["candidates"] if c.get("samples")) == rounds
    report = (plan.report_dir / "report.md").read_text()
    assert "re-timed together in 2 (M=256) or 3 (M=4096) interleaved rounds (median)" in report
    # Asked for, the rounds are the same at every batch size.
    assert [rounds_at(M, 3) for M in (1, 512, 4096)] == [3, 3, 3]


class Scripted:
    """Each config's times, round by round (by BLOCK_SIZE_N); records what it measured."""

    def __init__(self, times: dict[int, list[float]]):
        self.times = {n: list(us) for n, us in times.items()}
        self.measured: list[int] = []

    def prepare(self, configs, M):
        pass

    def measure(self, config, M):
        self.measured.append(config["BLOCK_SIZE_N"])
        return Measurement(us=self.times[config["BLOCK_SIZE_N"]].pop(0))


def scripted_configs(*ns):
    return [{"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": n, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
             "num_warps": 4, "num_stages": 3} for n in ns]


def test_retime_takes_more_rounds_only_while_they_disagree():
    # Rounds that agree: the 3 asked for.
    bench = Scripted({32: [100.0, 100.5, 100.2] + [99.0] * 2, 64: [101.0, 101.4, 101.1] + [99.0] * 2})
    timings = retime(bench, scripted_configs(32, 64), 1024, rounds=3, contenders=[0, 1])
    assert len(bench.measured) == 6 and [t["us"] for t in timings] == [100.2, 101.1]
    # One slow round (5%) of a config near the leader: 2 more rounds, and its median holds.
    bench = Scripted({32: [100.0, 105.0, 100.4, 100.2, 100.1], 64: [100.6, 100.8, 100.7] * 2})
    timings = retime(bench, scripted_configs(32, 64), 1024, rounds=3, contenders=[0, 1])
    assert len(bench.measured) == 10 and timings[0]["us"] == 100.2 < timings[1]["us"]
    # Without contenders (midpoints, anchored variants): the rounds asked for, never more.
    bench = Scripted({32: [100.0, 105.0, 100.4], 64: [100.6, 100.8, 100.7]})
    retime(bench, scripted_configs(32, 64), 1024, rounds=3)
    assert len(bench.measured) == 6


def test_retime_reports_a_config_that_cannot_run():
    grid_miss = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 16, "BLOCK_SIZE_K": 16, "GROUP_SIZE_M": 1,
                 "num_warps": 4, "num_stages": 3}
    plan = build_plan(compose("shape=qwen35_tp1", "device=h200", "benchmark=replay",
                              f"benchmark.tables=[{GRIDS}]"))
    [t] = retime(plan.replay, [grid_miss], 16, rounds=2)
    assert t == {"us": None, "reason": "not in the recorded table"}


def record_of(n, us, bk=128):
    config = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": bk, "GROUP_SIZE_M": n,
              "num_warps": 4, "num_stages": 3}
    return Record(number=n, config=config, us=us, spread=0.0, infeasible=None, source="sampler")


def test_finalists_skip_configs_the_kernel_would_rewrite():
    records = [record_of(1, 9.0, bk=256), record_of(2, 12.0), record_of(3, None), record_of(4, 10.0),
               record_of(5, 11.0), record_of(6, 13.0)]
    chosen, skipped = pick_finalists(records, 16, BLOCK, 3)
    assert [r.number for r in chosen] == [4, 5, 2]  # fastest first, infeasible left out
    assert [s["trial"] for s in skipped] == [1]
    assert "BLOCK_SIZE_K=256 runs as 128" in skipped[0]["reason"]
    # Without block quantization BLOCK_SIZE_K=256 runs as written.
    chosen, skipped = pick_finalists(records, 16, None, 3)
    assert [r.number for r in chosen] == [1, 4, 5] and skipped == []


def test_first_passes_that_tie_with_the_best_join_the_finalists():
    # 10.0 is the best; 10.05 and 10.09 are within 1% of it, 10.2 is not.
    records = [record_of(1, 10.0), record_of(2, 10.3), record_of(3, 10.05), record_of(4, 10.09),
               record_of(5, 10.2), record_of(6, 11.0)]
    chosen, _ = pick_finalists(records, 16, BLOCK, 2)
    assert [r.number for r in chosen] == [1, 3, 4]
    # Never more than twice the asked number, ties or not.
    ties = [record_of(i, 10.0 + i / 1000) for i in range(1, 10)]
    assert len(pick_finalists(ties, 16, BLOCK, 2)[0]) == 4
    # Unless a wider cap is given (the drift-widened pick: WIDENED_MOST times the asked number).
    assert len(pick_finalists(ties, 16, BLOCK, 2, most=WIDENED_MOST * 2)[0]) == 8


def test_entries_are_the_fastest_retimed_finalist_or_vllms_default(tmp_path):
    # pruner=none: every search trial is one `measure`, so the re-timing's calls follow the 6th
    plan = plan_for(tmp_path, "trials=6", f"compare_with={VLLM_CONFIGS}", "finalists=3",
                    "retime_rounds=2", "pruner=none")
    bench = Recording(plan.replay)
    result = tune(plan, bench=bench)
    assert result.files == [tmp_path / "configs" / FILE] and check_file(result.files[0]) == []
    assert read_entries(result.files[0]) == result.entries
    shipped = read_entries(VLLM_CONFIGS / FILE)
    # Each bucket is settled as it finishes: its re-timing follows its 6 study measurements.
    retimed = [(M, k) for M in studies(plan)
               for k in [k for m, k in bench.measured if m == M][6:]]
    for M, study in studies(plan).items():
        cons = study.user_attrs[StudyAttr.CONSOLIDATION]
        times = table(M)
        default = vllm_rules.default_config(M, 256, "fp8_w8a8", BLOCK)
        finalists = [r.config for r in pick_finalists(read_records(study), M, BLOCK, 3)[0]]
        # The finalists, the default and the file's entry (as it runs), each in 2 rounds.
        file_runs_as = vllm_rules.runs_as(vllm_rules.nearest_entry(shipped, M), BLOCK)
        # The file's entry was measured in the search too (a warm start), not only re-timed.
        assert SearchSpace.key(nearest_config(plan.space, file_runs_as)) in {
            SearchSpace.key(r.config) for r in read_records(study)}
        contenders = {SearchSpace.key(c) for c in [*finalists, default, file_runs_as]}
        at_M = [k for m, k in retimed if m == M]
        assert set(at_M) == contenders
        for k in contenders:  # one round only for a config that cannot run (not in the table)
            assert at_M.count(k) == (2 if times.get(k) is not None else 1)
        # The entry is the fastest of finalists and default, per the recorded table (of GROUP_SIZE_M
        # variants as fast, the smallest: replay has no spread).
        assert result.entries[M] == replay_pick([*finalists, default],
                                                lambda c, times=times: times[SearchSpace.key(c)])
        assert cons["entry"]["us"] == times[SearchSpace.key(result.entries[M])]
        assert cons["entry"]["source"] == ("vllm_default" if result.entries[M] == default
                                           else "tuned")
        assert cons["entry"]["verified"] is None  # replay cannot check outputs
        assert cons["default"]["us"] == times.get(SearchSpace.key(default))
        assert cons["file"]["us"] == times.get(SearchSpace.key(file_runs_as))
        assert check_entry(str(M), result.entries[M], BLOCK) == []


def timed(us, spread=0.0, **config):
    base = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 1,
            "num_warps": 4, "num_stages": 4}
    return {"config": {**base, **config}, "us": us, "spread": spread}


def test_a_smaller_group_size_m_within_the_fastests_spread_is_written():
    g32, g1, g16 = (timed(47.71, 0.004, GROUP_SIZE_M=32), timed(47.75, 0.005),
                    timed(47.78, 0.005, GROUP_SIZE_M=16))
    slower = timed(47.72, BLOCK_SIZE_N=32)
    assert writing_order([g32, slower, g1, g16]) == [g1, g32, slower, g16]
    # Outside the fastest's spread the fastest goes first, whatever the other's own spread (M=4
    # on an H200: GROUP_SIZE_M=1 0.6% behind with a 1.2% spread, behind in every process).
    g16, g1 = timed(76.23, 0.002, GROUP_SIZE_M=16), timed(76.70, 0.012)
    assert writing_order([g1, g16])[0] is g16
    # A wide spread is a wide band (M=2048 bf16 on an H200: 5.8%).
    g16_noisy, g1_noisy = timed(551.8, 0.058, GROUP_SIZE_M=16), timed(568.2, 0.027)
    assert writing_order([g16_noisy, g1_noisy])[0] is g1_noisy
    # A tie in any other parameter is left to the timing.
    stages = timed(47.70, 0.01, num_stages=5, GROUP_SIZE_M=16)
    assert writing_order([g1, stages])[0] is stages
    # Untimed candidates are never tried.
    assert writing_order([{"config": g1["config"], "us": None}]) == []


def test_a_config_with_wrong_results_is_never_written(tmp_path):
    plan = plan_for(tmp_path, "trials=10", "buckets=[16]", "retime_rounds=1")
    tune(plan, bench=Recording(plan.replay))
    first = read_entries(plan.output_path)[16]
    # Same studies, now the benchmarker says the winner's output is wrong: the next one is taken.
    plan = plan_for(tmp_path, "trials=10", "buckets=[16]", "retime_rounds=2")
    bench = Recording(plan.replay, wrong=[SearchSpace.key(first)])
    result = tune(plan, bench=bench)
    cons = studies(plan)[16].user_attrs[StudyAttr.CONSOLIDATION]
    assert result.entries[16] != first
    assert bench.verified[0] == (16, SearchSpace.key(first))
    rejected = [c for c in cons["candidates"] if c.get("verified") is False]
    assert [c["config"] for c in rejected] == [first]
    assert cons["entry"]["us"] >= rejected[0]["us"]


def test_a_rerun_times_nothing_again(tmp_path):
    args = ("trials=4", "buckets=[16,64]", f"compare_with={VLLM_CONFIGS}")
    first = tune(plan_for(tmp_path, *args))
    bench = Recording(plan_for(tmp_path, *args).replay)
    again = tune(plan_for(tmp_path, *args), bench=bench)
    assert bench.measured == [] and bench.verified == []
    assert again.entries == first.entries


def test_interrupted_consolidation_keeps_the_finished_buckets_and_resumes(tmp_path):
    args = ("trials=4", "retime_rounds=2", "buckets=[1,16,64,256]")
    plan = plan_for(tmp_path, *args)
    # Ctrl-C at the first re-timing of M=64, after its study's 4 measurements (each bucket is
    # settled as it finishes, so M=1 and M=16 are, and M=256 is not tuned yet).
    bench = Recording(plan.replay, interrupt=lambda M, done: M == 64 and sum(
        m == 64 for m, _ in bench.measured) >= 4)
    interrupted = tune(plan, bench=bench)
    assert interrupted.interrupted
    done = sorted(interrupted.entries)
    assert done == [1, 16]  # re-timed and checked before Ctrl-C; the others are left out
    assert sorted(read_entries(plan.output_path)) == done
    report = json.loads((plan.report_dir / "report.json").read_text())
    assert [b["status"] for b in report["buckets"]] == ["written", "written",
                                                        "not re-timed (not written)", "not tuned"]
    bench = Recording(plan.replay)
    result = tune(plan_for(tmp_path, *args), bench=bench)
    assert sorted(result.entries) == [1, 16, 64, 256]
    assert {M for M, _ in bench.measured} >= {64, 256}
    assert {M for M, _ in bench.measured if M in (1, 16)} == set()  # not timed again


def test_midpoint_check_reports_where_the_neighbours_entry_is_faster(tmp_path, caplog):
    # Tables at M=1 and M=64, and the M=16 table standing in for M=32, their midpoint (real
    # timings of this shape, at a batch size near the one it stands for).
    grids = tmp_path / "grids"
    grids.mkdir()
    for M in (1, 64, 256):
        shutil.copy(GRIDS / f"NVIDIA_H200_E256_N512_K2048_fp8block_M{M}.json", grids)
    data = json.loads((GRIDS / "NVIDIA_H200_E256_N512_K2048_fp8block_M16.json").read_text())
    data["M"] = 32
    (grids / "M32.json").write_text(json.dumps(data))
    overrides = [a if not a.startswith("benchmark.tables") else f"benchmark.tables=[{grids}]"
                 for a in replay_args(tmp_path, "trials=6", "buckets=[1,64,256]", "retime_rounds=2",
                                      "midpoint_rounds=3")]
    plan = build_plan(compose(*overrides))
    bench = Recording(plan.replay)
    result = tune(plan, bench=bench)
    check = studies(plan)[1].user_attrs[StudyAttr.MIDPOINT]
    at32 = table(16)
    served, neighbour = (at32[SearchSpace.key(result.entries[M])] for M in (1, 64))
    assert (check["M"], check["served_by"], check["neighbour"]) == (32, 1, 64)
    assert check["served"]["us"] == served and check["neighbour_timing"]["us"] == neighbour
    assert check["neighbour_better"] == (neighbour < served * 0.99)
    assert SearchSpace.key(result.entries[1]) != SearchSpace.key(result.entries[64])
    assert sum(M == 32 for M, _ in bench.measured) == 2 * 3  # midpoint_rounds, not retime_rounds
    # Checked once both entries were settled, before the next bucket's search.
    order = [M for M, _ in bench.measured]
    assert order.index(32) < order.index(256)
    # Warned once, when measured (the run's end only looks the check up).
    warned = [r for r in caplog.records if "is faster" in r.getMessage()]
    assert check["neighbour_better"] and len(warned) == 1 and warned[0].getMessage().startswith(
        "M=32 (served by the entry of 1): the entry of 64 is faster")
    report = (plan.report_dir / "report.md").read_text()
    assert f"| 32 | 1 | {served:.2f} | 64 | {neighbour:.2f} |" in report
    assert "(3 interleaved rounds, median)" in report


def test_midpoints_without_a_table_are_not_available_in_replay(tmp_path):
    plan = plan_for(tmp_path, "trials=4", "buckets=[1,16]")
    tune(plan, bench=Recording(plan.replay))
    check = studies(plan)[1].user_attrs[StudyAttr.MIDPOINT]
    assert check["M"] == 8 and check["neighbour_better"] is None
    assert check["served"] == {"us": None, "reason": "no recorded table at M=8"}


@pytest.mark.parametrize("value, words", [
    ("/nowhere/file.json", "no such file or folder"),
    (str(VLLM_CONFIGS / "E=64,N=640,device_name=NVIDIA_H100_80GB_HBM3.json"), "another shape"),
    (str(GRIDS), "the folder has no " + FILE),
])
def test_compare_with_is_refused_with_the_reason(tmp_path, value, words):
    with pytest.raises(UserError, match=re.escape(words)):
        plan_for(tmp_path, f"compare_with='{value}'")


class FastStart(Recording):
    """Replay whose first `fast` measurements read 5% fast, as the first measurements of a
    process did on an H200 (benchmarks/fidelity_h200/README.md); later ones are exact."""

    def __init__(self, inner, fast=3):
        super().__init__(inner)
        self.fast = fast

    def measure(self, config, M):
        m = super().measure(config, M)
        if len(self.measured) <= self.fast and m.ok:
            return dataclasses.replace(m, us=m.us * 0.95)
        return m


@pytest.mark.parametrize("M", [1, 16])
def test_finalists_whose_first_pass_read_fast_widen_the_band_by_that_drift(tmp_path, M):
    plan = plan_for(tmp_path, "trials=16", "patience=null", f"buckets=[{M}]", "retime_rounds=1")
    bench = FastStart(plan.replay)
    result = tune(plan, bench=bench)
    cons = studies(plan)[M].user_attrs[StudyAttr.CONSOLIDATION]
    times = table(M)
    measured = [k for m, k in bench.measured[:16] if times.get(k) is not None]
    early_best = min(times[k] for k in measured[:3])
    best = min(times[k] for k in measured)
    assert best < early_best  # the case: a later trial is truly faster than the fast-read ones
    assert cons["first_pass_drift"] > 1.04
    # That config, or one of the GROUP_SIZE_M variants re-timed after the drift (next test).
    assert times[SearchSpace.key(result.entries[M])] <= best


@pytest.mark.parametrize("M, unmeasured", [(1, True), (16, False)])
def test_after_a_drift_the_fastest_finalists_unmeasured_group_size_m_variants_are_retimed(
        tmp_path, M, unmeasured):
    plan = plan_for(tmp_path, "trials=16", "patience=null", f"buckets=[{M}]", "retime_rounds=1")
    bench = FastStart(plan.replay)
    result = tune(plan, bench=bench)
    cons = studies(plan)[M].user_attrs[StudyAttr.CONSOLIDATION]
    times = table(M)
    tuned = [c for c in cons["candidates"] if c["source"] == "tuned" and c["us"] is not None]
    fastest = min(tuned, key=lambda c: c["us"])
    searched = {k for _, k in bench.measured[:16]}
    expected = {SearchSpace.key(c) for c in plan.space.group_variants(fastest["config"])
                if SearchSpace.key(c) not in searched}
    variants = [c for c in cons["candidates"] if c["source"] == "group_variant"]
    assert bool(expected) == unmeasured  # at M=16 the search had measured them all
    assert {SearchSpace.key(c["config"]) for c in variants} == expected
    assert all(c["trial"] is None and c["us"] == times.get(SearchSpace.key(c["config"]))
               for c in variants)
    # The entry is the fastest of everything re-timed, variants included, per the recorded table.
    retimed = [c for c in cons["candidates"] if c["us"] is not None]
    assert times[SearchSpace.key(result.entries[M])] == min(c["us"] for c in retimed)
    md = (plan.report_dir / "report.md").read_text()
    if cons["entry"]["source"] == "group_variant":
        assert f"| {M} | " in md and "GROUP_SIZE_M variant (re-timing)" in md


class SlowingRetiming(FastStart):
    """FastStart, whose re-timing passes after the search each read every config 3% slower than
    the pass before (the GPU warming up between them): a pass begins with a `prepare`."""

    def __init__(self, inner, search):
        super().__init__(inner)
        self.search, self.passes = search, 0

    def prepare(self, configs, M):
        if len(self.measured) >= self.search:
            self.passes += 1
        return self.inner.prepare(configs, M)

    def measure(self, config, M):
        m = super().measure(config, M)
        slower = 1 + 0.03 * max(0, self.passes - 1)
        return dataclasses.replace(m, us=m.us * slower) if m.ok else m


def test_configs_added_after_the_first_retiming_are_timed_against_its_fastest_once(tmp_path):
    plan = plan_for(tmp_path, "trials=16", "patience=null", "buckets=[1]", "retime_rounds=3",
                    "pruner=none")  # the search is 16 `measure` calls
    bench = SlowingRetiming(plan.replay, search=16)
    result = tune(plan, bench=bench)
    cons = studies(plan)[1].user_attrs[StudyAttr.CONSOLIDATION]
    times = table(1)
    retimed = [c for c in cons["candidates"] if c["us"] is not None]
    added = [c for c in retimed if c["source"] == "group_variant"
             or c["trial"] not in {t for t, _ in cons["inputs"]["finalists"]}]
    assert cons["first_pass_drift"] > 1.04 and added  # the widened pass ran
    # On the first pass's scale, the slowdown between passes does not decide: the entry is the
    # truly fastest of everything re-timed (the recorded table's order), added configs included.
    truth = lambda c: times[SearchSpace.key(c["config"])]  # noqa: E731
    assert times[SearchSpace.key(result.entries[1])] == min(truth(c) for c in retimed)
    # Each config is re-timed in one pass only (3 rounds; 2 for a finalist beaten by then), but
    # the anchors: the first pass's fastest, and the fastest after the widened pass when the
    # variants are timed against it.
    counts = {}
    for _, key in bench.measured[16:]:
        counts[key] = counts.get(key, 0) + 1
    assert set(counts.values()) <= {2, 3, 6, 9} and sum(n > 3 for n in counts.values()) <= 2
