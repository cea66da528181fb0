"""cascade.heads: the ranker's two heads, mixed by weights the ONNX graph keeps as an initializer that
a serving process may override (CASCADE_RANK_HEAD_WEIGHTS)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cascade.features import FeatureTables, as_rows, random_rows
from cascade.heads import ENV, HEAD_WEIGHTS, normalised, overrides_from_env, parse_head_weights
from cascade.models.scorers import StudentRanker
from cascade.settings import Settings
from cascade.specs import rank_spec
from cascade.triton.batching import FeatureRequest
from cascade.triton.fused import FusedScorer
from cascade.triton.sessions import cpu_session
from tests.unit.conftest import TINY_CONFIG, export_tiny_scorer

SPEC = rank_spec(TINY_CONFIG.history_len)


@pytest.fixture(scope="module")
def student() -> StudentRanker:
    torch.manual_seed(0)
    return StudentRanker(TINY_CONFIG, dim=4, hidden=8, hint_dim=4, head_weights=(1.0, 0.3))


@pytest.fixture(scope="module")
def onnx_path(student: StudentRanker, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_scorer(student, SPEC, tmp_path_factory.mktemp("heads") / "rank.onnx")


@pytest.fixture(scope="module")
def rows() -> dict[str, np.ndarray]:
    return random_rows(TINY_CONFIG, 16, np.random.default_rng(1))


@torch.no_grad()
def head_probabilities(student: StudentRanker, rows: dict[str, np.ndarray]) -> np.ndarray:
    features = [torch.from_numpy(rows[t.name]) for t in SPEC.inputs if t.name in rows]
    return student.head_probabilities(*features).numpy()


def test_weights_parse_from_click_comma_second_and_bad_ones_are_named() -> None:
    assert parse_head_weights(" 1, 0.5") == (1.0, 0.5)
    np.testing.assert_allclose(normalised((3.0, 1.0)), [0.75, 0.25])
    for bad in ("1", "1,2,3", "a,b", "-1,2", "0,0", "nan,1"):
        with pytest.raises(ValueError, match="head weights"):
            parse_head_weights(bad)
    with pytest.raises(ValueError, match="head weights"):
        Settings(rank_head_weights="0,0")
    assert Settings(rank_head_weights="2,1").head_weights == (2.0, 1.0)


def test_overrides_come_from_the_environment_only_when_set() -> None:
    assert overrides_from_env({}) == {}
    got = overrides_from_env({ENV: "1,1"})
    np.testing.assert_allclose(got[HEAD_WEIGHTS], [0.5, 0.5])


def test_the_served_score_mixes_the_heads_by_the_baked_weights(student: StudentRanker, onnx_path: Path, rows) -> None:
    graph = onnx.load(str(onnx_path))
    assert HEAD_WEIGHTS in {i.name for i in graph.graph.initializer}
    p = head_probabilities(student, rows)
    assert not np.allclose(p[:, 0], p[:, 1])  # two heads, not one twice
    got = cpu_session(onnx_path).run(None, as_rows(rows, SPEC.input_names))[0]
    np.testing.assert_allclose(got, p @ normalised((1.0, 0.3)), atol=1e-5)


@pytest.mark.parametrize("weights", [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_a_session_overrides_the_weights_without_a_new_export(student, onnx_path: Path, rows, weights) -> None:
    p = head_probabilities(student, rows)
    session = cpu_session(onnx_path, initializers={HEAD_WEIGHTS: normalised(weights)})
    got = session.run(None, as_rows(rows, SPEC.input_names))[0]
    np.testing.assert_allclose(got, p @ normalised(weights), atol=1e-5)


def test_the_fused_scorer_serves_the_overridden_mix(student, onnx_path: Path, tiny_tables: FeatureTables) -> None:
    """What the Triton adapter does with CASCADE_RANK_HEAD_WEIGHTS=0,1: the second head alone."""
    request = FeatureRequest(0, np.array([0, 1, 2, 3]), np.array([2, 1]), 1_700_000_000)
    baked = FusedScorer(tiny_tables, onnx_path).score([request])[0]
    second = FusedScorer(tiny_tables, onnx_path, initializers=overrides_from_env({ENV: "0,1"})).score([request])[0]
    click = FusedScorer(tiny_tables, onnx_path, initializers=overrides_from_env({ENV: "1,0"})).score([request])[0]
    np.testing.assert_allclose(baked, normalised((1.0, 0.3)) @ np.stack([click, second]), atol=1e-5)
    assert not np.allclose(click, second)
