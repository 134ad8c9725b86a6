"""One bucket's search on the recorded H200 tables: warm starts, the samplers, pruning, stopping."""

import json

import optuna
import pytest
from optuna.trial import TrialState

from autotune.bench.replay import ReplayBenchmarker
from autotune.config import PrunerConfig, SamplerConfig, SearchSpaceConfig, ShapeConfig
from autotune.errors import UserError
from autotune.problem import vllm_rules
from autotune.problem.shape import MoEShape
from autotune.problem.space import SearchSpace
from autotune.search.prior import (
    ShippedFile,
    bucket_prior,
    load_prior_sources,
    load_shipped_files,
    rank_configs,
)
from autotune.search.prior_gp import PriorGPSampler
from autotune.search.samplers import IncumbentPruner, make_pruner, make_sampler
from autotune.search.warm_starts import first_trials, neighbour_bests
from autotune.study.records import Record, read_records
from autotune.study.tuner import BucketTuner, _since_improvement
from tests.conftest import GRIDS, VLLM, VLLM_CONFIGS, compose, replay_args, run_cli

optuna.logging.set_verbosity(optuna.logging.WARNING)

H200 = "NVIDIA H200"
SHAPE = MoEShape.from_config(ShapeConfig(model="qwen35", experts=256, hidden_size=2048,
                                         intermediate_size=512, topk=8, block_shape=[128, 128]))
SPACE = SearchSpace.from_config(VLLM, SHAPE, 232448)
OWN_FILE = "E=256,N=512,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"


@pytest.fixture(scope="module")
def bench():
    return ReplayBenchmarker([str(GRIDS)], SHAPE, H200)


def new_study(sampler=None, pruner=None):
    return optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction="minimize",
                               sampler=sampler or optuna.samplers.RandomSampler(seed=0),
                               pruner=pruner or optuna.pruners.NopPruner())


def record(config, us, number=0, pruned=False):
    return Record(number=number, config=config, us=us, spread=0.0, infeasible=None,
                  source="sampler", pruned=pruned)


def cfg(**kw):
    return {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
            "num_warps": 4, "num_stages": 3, **kw}


# -- warm starts ---------------------------------------------------------------------------------
def test_warm_starts_come_in_order_neighbours_default_file_prior_each_once():
    tuned = {1: [record(cfg(num_stages=4), 11.0), record(cfg(GROUP_SIZE_M=16), 12.0)],
             64: [record(cfg(BLOCK_SIZE_N=32), 170.0)]}
    settings = SamplerConfig(neighbour_trials=1, prior_trials=3,
                             warm_start_file=str(VLLM_CONFIGS / OWN_FILE.replace(
                                 "NVIDIA_H200", "NVIDIA_H100_80GB_HBM3").replace(
                                 "E=256,N=512", "E=256,N=384")))
    warm = first_trials(SPACE, H200, 16, settings, tuned)
    sources = [s for s, _ in warm]
    # M=64 is two octaves from 16, M=1 four: the nearer neighbour comes first.
    assert sources[:3] == ["neighbour_M64", "neighbour_M1", "vllm_default"]
    assert warm[0][1] == cfg(BLOCK_SIZE_N=32) and warm[1][1] == cfg(num_stages=4)
    assert warm[2][1] == vllm_rules.default_config(16, 256, "fp8_w8a8", (128, 128))
    assert sources[3:] == ["file", "prior", "prior", "prior"]
    # The H100 E=256,N=384 file's M=16 entry, as the kernel runs it here.
    h100 = json.loads((VLLM_CONFIGS / settings.warm_start_file.split("/")[-1]).read_text())["16"]
    assert warm[3][1] == {k: int(v) for k, v in h100.items()}
    keys = [SearchSpace.key(c) for _, c in warm]
    assert len(set(keys)) == len(keys)
    assert all(SPACE.violation(c) is None for _, c in warm)


def test_the_compared_files_entry_is_measured_right_after_vllms_default():
    # The entry vLLM would take for M=16 from the file the run is compared with (its "8" and
    # "24" keys are equally near 16: vLLM takes the smaller), BLOCK_SIZE_K clamped as vLLM runs it.
    compared = {8: cfg(BLOCK_SIZE_N=32, BLOCK_SIZE_K=256), 24: cfg(num_stages=5), 64: cfg()}
    settings = SamplerConfig(prior_trials=1)
    warm = first_trials(SPACE, H200, 16, settings, compared=compared)
    assert [s for s, _ in warm] == ["vllm_default", "compared", "prior"]
    assert warm[1][1] == cfg(BLOCK_SIZE_N=32, BLOCK_SIZE_K=128)
    settings.warm_start_compared = False
    assert "compared" not in [s for s, _ in first_trials(SPACE, H200, 16, settings,
                                                         compared=compared)]


def test_warm_starts_are_measured_first_and_skip_what_the_study_already_holds(bench):
    settings = SamplerConfig(prior_trials=2)
    warm = first_trials(SPACE, H200, 64, settings)
    study = new_study()
    BucketTuner(study=study, space=SPACE, bench=bench, M=64, budget=1).run(warm)
    outcome = BucketTuner(study=study, space=SPACE, bench=bench, M=64, budget=6).run(warm)
    configs = [r.config for r in outcome.records]
    assert [r.source for r in outcome.records[:3]] == ["vllm_default", "prior", "prior"]
    assert configs[:3] == [c for _, c in warm]
    assert len({SearchSpace.key(c) for c in configs}) == 6  # resumed: nothing measured twice


def test_a_queued_trial_another_run_is_half_way_through_popping_does_not_break_queueing(bench):
    # Another run pops a WAITING trial and writes its params one by one: a reader can see the
    # trial still WAITING with some params. The queue is read from the trial's fixed_params.
    warm = first_trials(SPACE, H200, 64, SamplerConfig(prior_trials=2))
    study = new_study()
    study.enqueue_trial(SPACE.encode(warm[0][1]))
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))[0]
    name = next(iter(SPACE.params))
    study._storage.set_trial_param(waiting._trial_id, name, SPACE.encode(warm[0][1])[name],
                                   SPACE.distributions()[name])
    queued = BucketTuner(study=study, space=SPACE, bench=bench, M=64, budget=3)._enqueue(warm)
    assert queued == [c for _, c in warm[1:]]  # the half-popped trial still counts as queued


def test_neighbour_bests_take_the_nearest_tuned_bucket_on_each_side_best_first():
    a, b, c, d = cfg(), cfg(GROUP_SIZE_M=16), cfg(GROUP_SIZE_M=32), cfg(GROUP_SIZE_M=64)
    tuned = {
        8: [record(a, 30.0), record(b, 20.0), record(c, 25.0, pruned=True)],
        4: [record(d, 1.0)],  # farther below than 8: ignored
        32: [record(c, 50.0), Record(1, d, None, 0.0, "failed", "sampler")],
    }
    assert neighbour_bests(tuned, 16, 2) == [(8, b), (32, c), (8, a)]
    assert neighbour_bests(tuned, 16, 0) == []
    assert neighbour_bests({}, 16, 2) == []
    # Nearest first, and no farther than a measured bucket (a run reads records on lookup).
    tuned[12] = [Record(2, a, None, 0.0, "failed", "sampler")]  # nearer below, nothing measured
    looked = []

    class Looking(dict):
        def __getitem__(self, M):
            looked.append(M)
            return super().__getitem__(M)

    assert neighbour_bests(Looking(tuned), 16, 2) == [(8, b), (32, c), (8, a)]
    assert 4 not in looked and {12, 8, 32} <= set(looked)


def test_a_missing_warm_start_file_is_one_clear_error():
    with pytest.raises(UserError, match="warm_start_file=/nope.json does not exist"):
        first_trials(SPACE, H200, 16, SamplerConfig(warm_start_file="/nope.json"))


# -- the prior -----------------------------------------------------------------------------------
def test_prior_never_reads_the_file_for_the_same_gpu_and_shape():
    own = ShippedFile.load(VLLM_CONFIGS / OWN_FILE)
    assert own.is_for(SPACE, H200)
    assert rank_configs(SPACE, [own], H200, 16) == []
    others = [f for f in load_shipped_files([str(VLLM_CONFIGS)]) if f.path.name != OWN_FILE]
    assert rank_configs(SPACE, others + [own], H200, 16) == rank_configs(SPACE, others, H200, 16)
    # On another GPU the same file is an ordinary source.
    assert rank_configs(SPACE, [own], "NVIDIA H100 80GB HBM3", 16) != []


def test_prior_ranks_every_config_and_favours_what_the_files_agree_on():
    files = load_shipped_files(None)
    assert {f.path.name for f in files} == {p.name for p in VLLM_CONFIGS.glob("*.json")}
    ranked = rank_configs(SPACE, files, H200, 16)
    assert len(ranked) == SPACE.size()
    top = ranked[0]
    # The shipped fp8-block winners at small M: 16-row tiles, BLOCK_SIZE_K = the block, 4 warps.
    assert (top["BLOCK_SIZE_M"], top["BLOCK_SIZE_K"], top["num_warps"]) == (16, 128, 4)
    assert ranked[-1]["BLOCK_SIZE_M"] == 256


def test_bad_prior_files_are_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="nothing found"):
        load_shipped_files([str(tmp_path / "none*.json")])
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(UserError, match="not named like a vLLM config file"):
        load_shipped_files([str(tmp_path / "notes.json")])
    bad = tmp_path / "E=8,N=8,device_name=X.json"
    bad.write_text("[1, 2]")
    with pytest.raises(UserError, match="not readable"):
        load_shipped_files([str(bad)])


# -- samplers ------------------------------------------------------------------------------------
def test_sampler_settings_are_pinned_from_config_not_library_defaults():
    tpe = make_sampler(SamplerConfig(name="tpe", n_startup_trials=3, n_ei_candidates=7,
                                     multivariate=True, constant_liar=False), seed=1)
    assert (tpe._n_startup_trials, tpe._n_ei_candidates, tpe._multivariate,
            tpe._constant_liar) == (3, 7, True, False)
    gp = make_sampler(SamplerConfig(name="prior_gp", n_startup_trials=2, step_correlation=0.4,
                                    prior_weight=0.7), seed=1, space=SPACE)
    assert isinstance(gp, PriorGPSampler)
    assert (gp.n_startup_trials, gp.prior_weight) == (2, 0.7)
    with pytest.raises(UserError, match="sampler.step_correlation=1.5"):
        make_sampler(SamplerConfig(name="prior_gp", step_correlation=1.5), space=SPACE)


def test_the_default_sampler_preset_matches_the_schema_defaults():
    """conf/sampler/prior_gp.yaml and SamplerConfig say the same (the evaluated winner)."""
    composed = compose("shape=qwen35_tp1", "device=h200").sampler
    assert composed == SamplerConfig()
    assert composed.name == "prior_gp" and composed.prior_trials == 2
    assert composed.n_startup_trials == 0 and composed.step_correlation == 0.3
    assert composed.prior_weight == 0.5 and composed.prior_source == "both"
    assert composed.prior_table_weight == 16


def test_prior_gp_proposes_only_new_configs_the_space_allows(bench):
    prior = bucket_prior(SPACE, H200, 16)
    sampler = PriorGPSampler(SPACE, prior, seed=0)
    study = new_study(sampler)
    outcome = BucketTuner(study=study, space=SPACE, bench=bench, M=16, budget=40).run()
    assert len(outcome.records) == 40
    assert outcome.excluded == 0 and outcome.duplicates == 0
    # With nothing measured it proposes the prior's favourite.
    assert outcome.records[0].config == rank_configs(SPACE, load_prior_sources(None), H200,
                                                     16)[0]


def test_prior_gps_forecast_is_what_it_ranked_next_and_holds_its_next_proposal(bench):
    sampler = PriorGPSampler(SPACE, bucket_prior(SPACE, H200, 16), seed=0)
    study = new_study(sampler)
    outcome = BucketTuner(study=study, space=SPACE, bench=bench, M=16, budget=12).run()
    measured = {SearchSpace.key(r.config) for r in outcome.records}
    forecast = [SearchSpace.key(c) for c in sampler.forecast]
    assert len(forecast) == len(set(forecast)) == 16
    assert not set(forecast) & measured  # the last proposal and the ones before are not in it
    # The next proposal, now with the last one's measurement known (a trial left running: fine
    # for a throwaway study).
    assert SearchSpace.key(SPACE.suggest(study.ask())) in forecast


def test_prior_gp_is_reproducible_for_a_seed(bench):
    def configs(seed):
        study = new_study(PriorGPSampler(SPACE, None, seed=seed, n_startup_trials=3))
        out = BucketTuner(study=study, space=SPACE, bench=bench, M=256, budget=12).run()
        return [SearchSpace.key(r.config) for r in out.records]

    assert configs(5) == configs(5)
    assert configs(5) != configs(6)


# -- pruning -------------------------------------------------------------------------------------
def test_first_look_prunes_clearly_slower_configs_and_keeps_their_time(bench):
    study = new_study(pruner=make_pruner(PrunerConfig(name="screen", margin=0.1)))
    default = vllm_rules.default_config(16, 256, "fp8_w8a8", (128, 128))
    outcome = BucketTuner(study=study, space=SPACE, bench=bench, M=16, budget=30).run(
        [("vllm_default", default)])
    best = outcome.best
    assert outcome.pruned > 0
    for r in outcome.records:
        if r.pruned:
            assert r.us > best.us * 1.1 and r is not best
    stored = read_records(study)
    assert [r.pruned for r in stored] == [r.pruned for r in outcome.records]
    assert {t.state for t in study.get_trials()} >= {TrialState.PRUNED, TrialState.COMPLETE}
    # A pruned config proposed again is answered from the study, not looked at again.
    assert len({SearchSpace.key(r.config) for r in stored}) == len(stored)


def test_without_a_first_look_nothing_is_pruned(bench):
    class FullOnly:  # a benchmarker that cannot screen: measured in full, never pruned
        def __getattr__(self, name):
            if name == "screen":
                raise AttributeError(name)
            return getattr(bench, name)

    study = new_study(pruner=IncumbentPruner(margin=0.01))
    outcome = BucketTuner(study=study, space=SPACE, bench=FullOnly(), M=16, budget=10).run()
    assert outcome.pruned == 0 and len(outcome.records) == 10


def test_pruner_margin_must_be_positive():
    with pytest.raises(UserError, match="pruner.margin=0"):
        make_pruner(PrunerConfig(name="screen", margin=0))


# -- stopping ------------------------------------------------------------------------------------
def test_patience_stops_a_bucket_once_the_best_stops_improving(bench):
    study = new_study(optuna.samplers.RandomSampler(seed=3))
    outcome = BucketTuner(study=study, space=SPACE, bench=bench, M=64, budget=200,
                          patience=5).run([("vllm_default",
                                            vllm_rules.default_config(64, 256, "fp8_w8a8", (128, 128)))])
    assert outcome.stop_reason == "patience"
    # Five without a gain, then the best config's GROUP_SIZE_M variants (no gain either).
    assert 5 <= _since_improvement(outcome.records) <= 5 + 3
    assert len(outcome.records) < 200
    best = min((r for r in outcome.records if r.ok), key=lambda r: r.us)
    measured = {SearchSpace.key(r.config) for r in outcome.records}
    variants = [{**best.config, "GROUP_SIZE_M": g} for g in SPACE.params["GROUP_SIZE_M"]]
    assert all(SearchSpace.key(v) in measured for v in variants if SPACE.violation(v) is None)
    assert any(r.source == "polish" for r in outcome.records)  # random search had missed some


def test_since_improvement_counts_only_gains_of_half_a_percent():
    rs = [record(cfg(), 100.0), record(cfg(), 99.8), record(cfg(), 99.0), record(cfg(), 50.0,
                                                                                pruned=True)]
    # 99.8 is a 0.2% gain (no reset); 99.0 is 1% (reset); a pruned look never counts.
    assert _since_improvement(rs) == 1


def test_stop_rule_ends_the_run(bench):
    study = new_study()
    outcome = BucketTuner(study=study, space=SPACE, bench=bench, M=1, budget=50,
                          stop_when=lambda records: len(records) >= 3).run()
    assert (outcome.stop_reason, len(outcome.records)) == ("stop rule", 3)


# -- a whole run -----------------------------------------------------------------------------------
def test_a_run_warm_starts_each_bucket_from_the_buckets_tuned_before_it_and_a_named_file(tmp_path):
    other_gpu = VLLM_CONFIGS / ("E=256,N=384,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,"
                                "block_shape=[128,128].json")
    result = run_cli(*replay_args(tmp_path, "buckets=[1,16]", "trials=5",
                                  f"sampler.warm_start_file='{other_gpu}'"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'studies.db'}")
    sources = {}
    for name in optuna.get_all_study_names(storage):
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        sources[int(name.rsplit("M=", 1)[1])] = [t.user_attrs.get("source") for t in trials
                                                 if t.user_attrs.get("measured")]
    assert sources[1][:2] == ["vllm_default", "file"]
    assert sources[16][:2] == ["neighbour_M1", "neighbour_M1"]
    assert "file" in sources[16] and "prior" in sources[16]


def test_a_named_file_entry_off_the_space_becomes_the_nearest_config_the_space_allows():
    settings = SamplerConfig(warm_start_default=False, prior_trials=0)
    # H200 E=256,N=256 at M=1 is (8, 32, 128, 1, 4, 4): BLOCK_SIZE_M 8 is off the ladder.
    settings.warm_start_file = str(VLLM_CONFIGS / "E=256,N=256,device_name=NVIDIA_H200,"
                                                  "dtype=fp8_w8a8,block_shape=[128,128].json")
    assert first_trials(SPACE, H200, 1, settings) == [("file", cfg(BLOCK_SIZE_N=32, num_stages=4))]
    # H200 E=128,N=512 at M=16 is (16, 128, 256, 16, 4, 3): K=256 runs as the 128-wide block.
    settings.warm_start_file = str(VLLM_CONFIGS / "E=128,N=512,device_name=NVIDIA_H200,"
                                                  "dtype=fp8_w8a8,block_shape=[128,128].json")
    assert first_trials(SPACE, H200, 16, settings) == [
        ("file", cfg(BLOCK_SIZE_N=128, GROUP_SIZE_M=16))]


def test_a_run_with_the_screen_pruner_prunes_on_the_replay_tables_first_look(tmp_path):
    result = run_cli(*replay_args(tmp_path, "buckets=[16]", "trials=12", "pruner=screen",
                                  "pruner.margin=0.1"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'studies.db'}")
    (name,) = optuna.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.user_attrs["measured"] for t in pruned)
    assert "12 measured" in result.stdout


def test_the_exhaustive_grid_ignores_patience(bench):
    small = SearchSpace.from_config(SearchSpaceConfig(name="part", params={
        "BLOCK_SIZE_M": [16, 32], "BLOCK_SIZE_N": [64, 128], "BLOCK_SIZE_K": [128],
        "GROUP_SIZE_M": [1, 16], "num_warps": [4], "num_stages": [3, 4]}), SHAPE, 232448)
    outcome = BucketTuner(study=new_study(), space=small, bench=bench, M=16, budget=small.size(),
                          patience=2, exhaustive=True).run()
    assert (outcome.stop_reason, len(outcome.records)) == ("budget", 16)


# -- lookahead -----------------------------------------------------------------------------------
class Recording:
    """The replay benchmarker, noting what it was asked to compile ahead and to measure."""

    def __init__(self, inner):
        self.inner, self.prepared, self.measured = inner, [], []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def prepare(self, configs, M):
        self.prepared.extend(SearchSpace.key(c) for c in configs)

    def measure(self, config, M):
        self.measured.append(SearchSpace.key(config))
        return self.inner.measure(config, M)


@pytest.mark.parametrize("lookahead", [1, 4])
def test_lookahead_prepares_before_measuring_and_leaves_nothing_running(bench, lookahead):
    recording = Recording(bench)
    study = new_study(make_sampler(SamplerConfig(name="prior_gp"), seed=1, space=SPACE,
                                   prior=bucket_prior(SPACE, H200, 16)))
    warm = [("vllm_default", vllm_rules.default_config(16, 256, "fp8_w8a8", (128, 128)))]
    outcome = BucketTuner(study=study, space=SPACE, bench=recording, M=16, budget=12,
                          lookahead=lookahead).run(warm)
    assert len(outcome.records) == 12 == len(set(recording.measured))
    # Every measured config was handed to the compiler before it was measured.
    for i, key in enumerate(recording.measured):
        assert key in recording.prepared[: recording.prepared.index(key) + 1]
        assert recording.prepared.index(key) <= i + lookahead
    assert not study.get_trials(states=(TrialState.RUNNING,))
