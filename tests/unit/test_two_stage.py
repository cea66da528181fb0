"""TwoStageScorer: pre-rank -> best `keep` -> rank in one call gives what two FusedScorer calls give."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cascade.features import FeatureTables
from cascade.models.scorers import PreRanker, StudentRanker
from cascade.ordering import best_first
from cascade.specs import prerank_spec, rank_spec
from cascade.triton.fused import FusedScorer
from cascade.triton.two_stage import TwoStageRequest, TwoStageScorer
from tests.unit.conftest import TINY_CONFIG, export_tiny_scorer
from tests.unit.test_fused import REQUESTS, TS, requests_of


@pytest.fixture(scope="module")
def onnx_paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Untrained pre-ranker and student over the tiny feature config (random weights: distinct scores)."""
    folder = tmp_path_factory.mktemp("two_stage")
    torch.manual_seed(1)
    prerank = export_tiny_scorer(PreRanker(TINY_CONFIG, dim=4, hidden=8), prerank_spec(TINY_CONFIG.history_len),
                                 folder / "prerank.onnx")
    rank = export_tiny_scorer(StudentRanker(TINY_CONFIG, dim=4, hidden=8, hint_dim=4), rank_spec(TINY_CONFIG.history_len),
                              folder / "rank.onnx")
    return prerank, rank


def two_calls(tables: FeatureTables, paths: tuple[Path, Path], rows: list[tuple], keep: int) -> list[tuple]:
    """What the orchestrator computes with two pipeline calls per request."""
    prerank, rank = FusedScorer(tables, paths[0]), FusedScorer(tables, paths[1])
    out = []
    for request in requests_of(rows):
        pre = prerank.score([request])[0]
        kept = best_first(pre, keep)
        kept_request = requests_of([(request.user_id, request.item_ids[kept], request.history, request.timestamp)])
        out.append((kept, pre[kept], rank.score(kept_request)[0]))
    return out


@pytest.mark.parametrize("keep", [1, 2, 10])
def test_one_call_gives_the_two_calls_answer_for_requests_of_different_sizes(
    tiny_tables: FeatureTables, onnx_paths: tuple[Path, Path], keep: int
) -> None:
    got = TwoStageScorer(tiny_tables, *onnx_paths).score([TwoStageRequest(r, keep) for r in requests_of(REQUESTS)])
    want = two_calls(tiny_tables, onnx_paths, REQUESTS, keep)
    assert [len(g.kept) for g in got] == [min(keep, len(r[1])) for r in REQUESTS]
    for g, (kept, pre, rank) in zip(got, want):
        assert g.kept.dtype == np.int64 and g.prerank.dtype == g.rank.dtype == np.float32
        np.testing.assert_array_equal(g.kept, kept)
        np.testing.assert_allclose(g.prerank, pre, rtol=0, atol=1e-6)
        np.testing.assert_allclose(g.rank, rank, rtol=0, atol=1e-6)
    scores = np.concatenate([g.rank for g in got])
    assert len(np.unique(scores)) >= min(len(scores), 4)  # the ranker tells rows apart (REQUESTS repeat item 3)


def test_requests_without_candidates_get_empty_answers(tiny_tables: FeatureTables, onnx_paths: tuple[Path, Path]) -> None:
    scorer = TwoStageScorer(tiny_tables, *onnx_paths)
    assert scorer.score([]) == []
    empty = scorer.score([TwoStageRequest(r, 3) for r in requests_of([(0, [], [1], TS), REQUESTS[0]])])
    assert [len(e.kept) for e in empty] == [0, 3] and empty[0].rank.dtype == np.float32


def test_parse_needs_a_positive_keep_and_checks_the_request(tiny_tables: FeatureTables, onnx_paths: tuple[Path, Path]) -> None:
    scorer = TwoStageScorer(tiny_tables, *onnx_paths)
    raw = {"user_id": np.array([[0]]), "item_ids": np.array([[0, 3, 1]]), "history": np.array([[2, 1]]),
           "timestamp": np.array([[TS]])}
    parsed = scorer.parse({**raw, "keep": np.array([[2]])})
    assert parsed.keep == 2 and parsed.request.item_ids.tolist() == [0, 3, 1]
    with pytest.raises(ValueError, match="missing input 'keep'"):
        scorer.parse(raw)
    for bad in (np.array([[0]]), np.array([[2, 3]])):
        with pytest.raises(ValueError, match="'keep' must be one count >= 1"):
            scorer.parse({**raw, "keep": bad})
    with pytest.raises(ValueError, match="item_ids holds 9, outside the catalogue"):
        scorer.parse({**raw, "item_ids": np.array([[0, 9]]), "keep": np.array([[2]])})
