"""The prior learned from recorded moe-grid-table/1 tables, and the same-GPU-and-shape exclusion."""

from pathlib import Path

import pytest

from autotune.config import SamplerConfig, ShapeConfig
from autotune.errors import UserError
from autotune.files.grid_table import bundled_tables_dir
from autotune.problem.shape import MoEShape
from autotune.problem.space import SearchSpace
from autotune.search.prior import (
    PriorWeights,
    RecordedTable,
    ShippedFile,
    bucket_prior,
    load_prior_sources,
    rank_configs,
)
from autotune.search.warm_starts import first_trials
from tests.conftest import GRIDS, VLLM, VLLM_CONFIGS

H200 = "NVIDIA H200"
ROOT = Path(__file__).resolve().parents[1]
MINIMAX = ROOT / "benchmarks" / "tables" / "NVIDIA_H200_E256_N384_K3072_fp8block_M16_passa.json"
QWEN = SearchSpace.from_config(VLLM, MoEShape.from_config(ShapeConfig(
    model="qwen35", experts=256, hidden_size=2048, intermediate_size=512, topk=8,
    block_shape=[128, 128])), 232448)
MINIMAX_SPACE = SearchSpace.from_config(VLLM, MoEShape.from_config(ShapeConfig(
    model="minimax", experts=256, hidden_size=3072, intermediate_size=1536, topk=8, tp=4,
    block_shape=[128, 128])), 232448)


def test_a_table_counts_by_its_fastest_configs():
    table = RecordedTable.load(GRIDS / "NVIDIA_H200_E256_N512_K2048_fp8block_M16.json")
    assert (table.E, table.N, table.K, table.M, table.device) == (256, 512, 2048, 16, "NVIDIA_H200")
    assert table.ranked[0] == {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128,
                               "GROUP_SIZE_M": 1, "num_warps": 4, "num_stages": 3}
    assert len(table.ranked) == 8


def test_the_table_of_the_same_gpu_and_shape_is_never_used():
    assert MINIMAX_SPACE.context.shape.N == 384  # the minimax shape of the recorded table
    qwen_tables = load_prior_sources([str(GRIDS)])
    assert all(t.is_for(QWEN, H200) for t in qwen_tables)
    # Only tables of the very GPU and shape: no prior at all.
    assert rank_configs(QWEN, qwen_tables, H200, 16) == []
    minimax = RecordedTable.load(MINIMAX)
    assert not minimax.is_for(QWEN, H200) and minimax.is_for(MINIMAX_SPACE, H200)
    assert (rank_configs(QWEN, qwen_tables + [minimax], H200, 16)
            == rank_configs(QWEN, [minimax], H200, 16))
    # Another K is another shape; another GPU makes the same tables ordinary sources.
    assert rank_configs(QWEN, qwen_tables, "NVIDIA H100 80GB HBM3", 16) != []


def test_the_bundled_prior_leaves_out_the_tables_of_the_bucket_being_tuned():
    bundled = load_prior_sources(None, "both")
    own = [s for s in bundled if isinstance(s, RecordedTable) and s.is_for(QWEN, H200)]
    assert len(own) == 5  # the five qwen35 tables ship in the package ...
    others = [s for s in bundled if s not in own]
    # ... and change nothing when tuning qwen35 on an H200, at run time and in evaluation.
    for M in (1, 16, 4096):
        assert (bucket_prior(QWEN, H200, M, files=bundled).tolist()
                == bucket_prior(QWEN, H200, M, files=others).tolist())
    cfg = SamplerConfig(prior_trials=4)
    assert first_trials(QWEN, H200, 16, cfg) == first_trials(QWEN, H200, 16, cfg, None, others)


def test_a_table_prior_favours_the_tables_winners():
    minimax = RecordedTable.load(MINIMAX)
    top = rank_configs(QWEN, [minimax], H200, 16)[0]
    assert SearchSpace.key(top) in {SearchSpace.key(c) for c in minimax.ranked[:4]}
    assert (top["BLOCK_SIZE_N"], top["num_stages"]) == (128, 2)


def test_the_table_weight_sets_how_much_a_table_counts_against_vllm_files():
    shipped = load_prior_sources(None, "shipped")
    minimax = RecordedTable.load(MINIMAX)
    # Weight 0: the table says nothing; the prior is the vLLM files'.
    assert (rank_configs(QWEN, shipped + [minimax], H200, 16, PriorWeights(table=0))
            == rank_configs(QWEN, shipped, H200, 16))
    # The heavier the table, the more the prior's favourites are the table's winners.
    winners = {SearchSpace.key(c) for c in minimax.ranked}
    shares = [sum(SearchSpace.key(c) in winners for c in rank_configs(
        QWEN, shipped + [minimax], H200, 16, PriorWeights(table=w))[:8]) for w in (1, 16, 256)]
    assert shares[0] < shares[2] and shares == sorted(shares)
    # The same weight reaches the warm starts.
    light, heavy = (first_trials(QWEN, H200, 16, SamplerConfig(prior_table_weight=w),
                                 None, shipped + [minimax]) for w in (0, 256))
    assert light != heavy


def test_prior_source_picks_shipped_files_tables_or_both():
    shipped = load_prior_sources(None, "shipped")
    tables = load_prior_sources(None, "tables")
    assert shipped and all(isinstance(s, ShippedFile) for s in shipped)
    assert tables and all(isinstance(s, RecordedTable) for s in tables)
    assert len(load_prior_sources(None, "both")) == len(shipped) + len(tables)
    # Named files: vLLM files and tables together, each recognised.
    mixed = load_prior_sources([str(VLLM_CONFIGS), str(MINIMAX)])
    assert {type(s) for s in mixed} == {ShippedFile, RecordedTable}
    assert load_prior_sources([str(VLLM_CONFIGS), str(MINIMAX)], "tables") == [mixed[-1]]
    with pytest.raises(UserError, match="sampler.prior_source=vllm: use one of both"):
        load_prior_sources(None, "vllm")


def test_a_file_that_is_neither_kind_is_one_clear_error(tmp_path):
    (tmp_path / "notes.json").write_text('{"format": "something else"}')
    with pytest.raises(UserError, match="nor a moe-grid-table/1 table"):
        load_prior_sources([str(tmp_path)])
    bad = tmp_path / "table.json"
    bad.write_text('{"format": "moe-grid-table/1", "M": 16}')
    with pytest.raises(UserError, match="malformed"):
        load_prior_sources([str(bad)])


def test_bundled_tables_are_copies_of_the_recorded_ones():
    sources = {p.name: p for d in (GRIDS, ROOT / "benchmarks" / "tables") for p in d.glob("*.json")}
    bundled = sorted(bundled_tables_dir().glob("*.json"))
    assert len(bundled) >= 6
    for p in bundled:
        assert p.read_bytes() == sources[p.name].read_bytes(), p.name
