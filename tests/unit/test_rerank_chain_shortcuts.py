"""The rerank hot path's shortcuts give the answers of the long way round: an operator followed only
by `truncate` is asked for k, and unit embeddings normalised once replace per-request normalising."""
from __future__ import annotations

import numpy as np
import pytest

from cascade.rerank.base import RerankInput, apply_chain
from cascade.rerank.registry import build_chain
from cascade.rerank.similarity import unit_rows

OPERATOR_SPECS = [
    {"name": "mmr", "lam": 0.7},
    {"name": "mmr", "lam": 0.2, "category_weight": 0.0},
    {"name": "dpp", "theta": 0.6},
    {"name": "scatter", "window": 3},
    {"name": "cap_per_category", "limit": 2},
    {"name": "dedup"},
    {"name": "exclude_categories", "categories": [1]},
]


def random_batch(seed: int, n: int = 50) -> RerankInput:
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(n, 8)).astype(np.float32)
    embeddings[-5:] = embeddings[:5]  # duplicates of earlier rows
    return RerankInput(
        item_ids=rng.integers(0, 40, n),  # repeats, for dedup
        scores=np.round(rng.random(n), 2).astype(np.float32),  # rounding makes ties
        categories=rng.integers(0, 5, n),
        embeddings=embeddings,
    )


class Recording:
    """Wraps an operator and remembers the k it was asked for."""

    def __init__(self, operator: object) -> None:
        self.operator, self.asked = operator, []

    def __call__(self, batch: RerankInput, k: int) -> np.ndarray:
        self.asked.append(k)
        return self.operator(batch, k)


@pytest.mark.parametrize("spec", OPERATOR_SPECS, ids=lambda s: s["name"])
@pytest.mark.parametrize("seed", range(5))
def test_an_operator_before_truncate_gives_the_top_k_of_its_whole_order(spec: dict, seed: int) -> None:
    b = random_batch(seed)
    operator, truncate = build_chain([spec, {"name": "truncate"}])
    whole = operator(b, len(b))
    for k in (0, 1, 10, 49, 60):
        assert apply_chain([operator, truncate], b, k).tolist() == whole[:k].tolist()


def test_only_an_operator_followed_by_prefix_cuts_alone_is_asked_for_k() -> None:
    b = random_batch(0)
    mmr, cap, truncate = build_chain([{"name": "mmr"}, {"name": "cap_per_category", "limit": 3}, {"name": "truncate"}])
    first, second = Recording(mmr), Recording(cap)
    apply_chain([first, truncate, truncate], b, 10)
    assert first.asked == [10]
    apply_chain([first, second, truncate], b, 10)
    assert first.asked[-1] == 50 and second.asked == [10]


@pytest.mark.parametrize("spec", [{"name": "mmr", "lam": 0.7}, {"name": "dpp", "theta": 0.7}], ids=lambda s: s["name"])
@pytest.mark.parametrize("seed", range(5))
def test_unit_embeddings_normalised_once_give_the_same_order(spec: dict, seed: int) -> None:
    catalogue = np.random.default_rng(seed).normal(size=(200, 8)).astype(np.float32)
    catalogue[3] = 0.0  # a zero row stays zero
    ids = np.random.default_rng(seed + 100).choice(200, 50, replace=False)
    ids[0] = 3
    b = random_batch(seed)
    raw = RerankInput(ids, b.scores, b.categories, catalogue[ids])
    unit = RerankInput(ids, b.scores, b.categories, None, unit_embeddings=unit_rows(catalogue)[ids])
    chain = build_chain([spec, {"name": "truncate"}])
    assert apply_chain(chain, unit, 10).tolist() == apply_chain(chain, raw, 10).tolist()


@pytest.mark.parametrize("order", [[0, 0], [2], [-1], [0, 1, 2]])
def test_invalid_orders_are_refused(order: list[int]) -> None:
    class Fixed:
        def __call__(self, batch: RerankInput, k: int) -> np.ndarray:
            return np.array(order, dtype=np.int64)

    b = random_batch(0, n=2)
    with pytest.raises(ValueError, match="invalid order"):
        apply_chain([Fixed()], b, k=2)


def test_unit_embeddings_are_checked_and_carried_by_take() -> None:
    b = random_batch(0, n=4)
    with pytest.raises(ValueError, match="field lengths"):
        RerankInput(b.item_ids, b.scores, b.categories, None, unit_embeddings=np.zeros((3, 8)))
    unit = unit_rows(b.embeddings)
    taken = RerankInput(b.item_ids, b.scores, b.categories, None, unit_embeddings=unit).take(np.array([2, 0]))
    np.testing.assert_array_equal(taken.unit(), unit[[2, 0]])
