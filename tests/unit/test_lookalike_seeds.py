import numpy as np
import pytest

from cascade.lookalike.seeds import AttentionParams, attention_scores, global_query, mean_pooled_scores, mean_query
from cascade.rerank.similarity import unit_rows


def _cluster(center: np.ndarray, n: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    return unit_rows(center + spread * rng.normal(size=(n, len(center))))


def test_mean_pooling_ranks_by_cosine_with_the_seeds_mean_direction() -> None:
    seeds = np.array([[1.0, 0, 0], [0, 2.0, 0]])  # lengths do not count
    candidates = np.array([[1.0, 1.0, 0], [1.0, 0, 0], [0, 0, 1.0]])
    scores = mean_pooled_scores(candidates, seeds)
    assert np.argsort(-scores).tolist() == [0, 1, 2]
    np.testing.assert_allclose(scores[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(mean_query(seeds), [2 ** -0.5, 2 ** -0.5, 0], atol=1e-6)


def test_attention_finds_each_audience_of_a_two_audience_seed_set_where_the_mean_finds_neither() -> None:
    """Seeds from two groups: the mean direction lies between them. Mean pooling ranks a user at that
    in-between direction first; the local attention ranks members of either group above it."""
    rng = np.random.default_rng(0)
    e1, e2 = np.eye(4)[0], np.eye(4)[1]
    seeds = np.vstack([_cluster(e1, 10, 0.05, rng), _cluster(e2, 10, 0.05, rng)])
    candidates = np.vstack([unit_rows((e1 + e2)[None]), _cluster(e1, 1, 0.05, rng), _cluster(e2, 1, 0.05, rng)])
    assert np.argmax(mean_pooled_scores(candidates, seeds)) == 0
    attention = attention_scores(candidates, seeds, AttentionParams(local_temperature=0.05, mix=0.0))
    assert attention[1] > attention[0] and attention[2] > attention[0]


def test_the_global_attention_weighs_a_stray_seed_less_than_the_mean_does() -> None:
    rng = np.random.default_rng(1)
    e1, e3 = np.eye(4)[0], np.eye(4)[2]
    seeds = np.vstack([_cluster(e1, 9, 0.05, rng), e3])
    assert global_query(seeds, 0.05) @ e3 < mean_query(seeds) @ e3
    assert global_query(seeds, 0.05) @ e1 > mean_query(seeds) @ e1
    np.testing.assert_allclose(global_query(seeds[:1], 0.05), seeds[0], atol=1e-6)


def test_attention_with_the_whole_weight_on_the_global_part_is_the_cosine_with_the_global_query() -> None:
    rng = np.random.default_rng(2)
    seeds, candidates = rng.normal(size=(7, 8)), rng.normal(size=(5_000, 8))  # more than one chunk
    params = AttentionParams(global_temperature=0.2, mix=1.0)
    np.testing.assert_allclose(attention_scores(candidates, seeds, params),
                               unit_rows(candidates) @ global_query(seeds, 0.2), atol=1e-5)


def test_bad_shapes_and_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="seeds must be a non-empty"):
        mean_pooled_scores(np.ones((2, 3)), np.ones((0, 3)))
    with pytest.raises(ValueError, match=r"candidates must be \[m, 3\]"):
        attention_scores(np.ones((2, 4)), np.ones((2, 3)), AttentionParams())
    with pytest.raises(ValueError, match="temperatures"):
        AttentionParams(local_temperature=0.0)
    with pytest.raises(ValueError, match="mix"):
        AttentionParams(mix=1.5)
