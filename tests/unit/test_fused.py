"""FusedScorer: feature assembly + one ONNX Runtime call give the ensemble path's scores, per request."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cascade.features import FeatureTables, as_rows, assemble_requests
from cascade.models.scorers import StudentRanker
from cascade.specs import rank_spec
from cascade.triton.batching import FeatureRequest
from cascade.triton.fused import FusedScorer
from export.onnx_export import session
from tests.unit.conftest import TINY_CONFIG, export_tiny_scorer

TS = 1_700_000_000
# (user, items, history, timestamp): sizes 3, 1 and 4; an unknown user; an empty and a short history.
REQUESTS = [
    (0, [0, 3, 1], [2, 1], TS),
    (7, [2], [], TS + 5 * 3600),
    (1, [3, 3, 0, 2], [-1, 0, 1, 3], TS + 86_400),
]


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained student over the tiny feature config: random weights give distinct scores."""
    torch.manual_seed(0)
    model = StudentRanker(TINY_CONFIG, dim=4, hidden=8, hint_dim=4)
    return export_tiny_scorer(model, rank_spec(TINY_CONFIG.history_len), tmp_path_factory.mktemp("fused") / "rank.onnx")


def requests_of(rows: list[tuple]) -> list[FeatureRequest]:
    return [FeatureRequest(u, np.array(i, np.int64), np.array(h, np.int64), t) for u, i, h, t in rows]


def direct_scores(tables: FeatureTables, onnx_path: Path, rows: list[tuple]) -> list[np.ndarray]:
    """Every candidate as a row carrying its own user side (the user side broadcast), then the ONNX."""
    features, counts = assemble_requests(tables, [(u, np.array(i), np.array(h), t) for u, i, h, t in rows])
    sess = session(onnx_path)
    scores = sess.run(None, as_rows(features, [i.name for i in sess.get_inputs()]))[0]
    return np.split(scores, np.cumsum(counts)[:-1])


def test_scores_equal_assembly_then_onnx_for_requests_of_different_sizes(tiny_tables: FeatureTables, onnx_path: Path) -> None:
    got = FusedScorer(tiny_tables, onnx_path).score(requests_of(REQUESTS))
    want = direct_scores(tiny_tables, onnx_path, REQUESTS)
    assert [g.shape for g in got] == [(3,), (1,), (4,)]
    assert all(g.dtype == np.float32 for g in got)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert len(np.unique(np.concatenate(got))) > 3  # the model tells the rows apart


def test_a_request_scores_the_same_alone_and_in_a_batch(tiny_tables: FeatureTables, onnx_path: Path) -> None:
    scorer = FusedScorer(tiny_tables, onnx_path)
    batched = scorer.score(requests_of(REQUESTS))
    for row, together in zip(REQUESTS, batched):
        np.testing.assert_allclose(scorer.score(requests_of([row]))[0], together, rtol=0, atol=1e-6)
    assert scorer.score([]) == []


def test_requests_without_candidates_get_empty_scores(tiny_tables: FeatureTables, onnx_path: Path) -> None:
    """No zero-row batch reaches ONNX Runtime (the served rank graph dies of SIGFPE on one)."""
    scorer = FusedScorer(tiny_tables, onnx_path)
    empty = requests_of([(0, [], [1], TS), (1, [], [], TS)])
    assert [(s.shape, s.dtype) for s in scorer.score(empty)] == [((0,), np.float32)] * 2
    mixed = scorer.score(requests_of([REQUESTS[0], (0, [], [1], TS)]))
    assert [s.shape for s in mixed] == [(3,), (0,)]


def test_parse_reads_raw_tensors_and_names_a_bad_input(tiny_tables: FeatureTables, onnx_path: Path) -> None:
    scorer = FusedScorer(tiny_tables, onnx_path)
    raw = {
        "user_id": np.array([[0]]), "item_ids": np.array([[0, 3, 1]]),
        "history": np.array([[2, 1]]), "timestamp": np.array([[TS]]),
    }
    np.testing.assert_array_equal(scorer.score([scorer.parse(raw)])[0], direct_scores(tiny_tables, onnx_path, REQUESTS[:1])[0])
    with pytest.raises(ValueError, match="item_ids holds 9, outside the catalogue"):
        scorer.parse({**raw, "item_ids": np.array([[0, 9]])})
    with pytest.raises(ValueError, match="missing input 'timestamp'"):
        scorer.parse({k: v for k, v in raw.items() if k != "timestamp"})


def test_a_bad_request_passed_straight_to_score_raises_naming_the_input(tiny_tables: FeatureTables, onnx_path: Path) -> None:
    scorer = FusedScorer(tiny_tables, onnx_path)
    with pytest.raises(ValueError, match="history holds 17, outside the catalogue"):
        scorer.score(requests_of([REQUESTS[0], (1, [0], [17], TS)]))
