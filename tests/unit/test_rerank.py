"""Rerank operators, the chain and its builder."""
from __future__ import annotations

import numpy as np
import pytest

from cascade.rerank.base import RerankInput, apply_chain
from cascade.rerank.mmr import DiversifyByMMR
from cascade.rerank.registry import OPERATORS, build_chain
from cascade.rerank.truncate import TruncateToK


def batch(
    scores: list[float], categories: list[int], embeddings: list[list[float]] | None = None
) -> RerankInput:
    return RerankInput(
        item_ids=np.arange(100, 100 + len(scores), dtype=np.int64),
        scores=np.array(scores, dtype=np.float32),
        categories=np.array(categories, dtype=np.int64),
        embeddings=None if embeddings is None else np.array(embeddings, dtype=np.float32),
    )


def test_mmr_with_lam_one_is_score_order() -> None:
    rng = np.random.default_rng(0)
    b = RerankInput(
        item_ids=np.arange(30, dtype=np.int64),
        scores=rng.random(30).astype(np.float32),
        categories=rng.integers(0, 3, 30),
        embeddings=rng.normal(size=(30, 4)).astype(np.float32),
    )
    order = DiversifyByMMR(lam=1.0)(b, k=10)
    assert order.tolist() == np.argsort(-b.scores, kind="stable")[:10].tolist()


def test_mmr_alternates_categories_when_diversity_weighs() -> None:
    b = batch([1.0, 0.9, 0.8, 0.7], [0, 0, 1, 1])
    # relevance [1, 2/3, 1/3, 0]. After item 0: item 1 gains 0.3*2/3 - 0.7*1 = -0.5,
    # item 2 gains 0.3*1/3 - 0 = 0.1 -> item 2. Then item 1 gains -0.5, item 3 gains -0.7 -> 1.
    assert DiversifyByMMR(lam=0.3)(b, k=4).tolist() == [0, 2, 1, 3]
    assert DiversifyByMMR(lam=1.0)(b, k=4).tolist() == [0, 1, 2, 3]


def test_mmr_embeddings_push_down_near_duplicates() -> None:
    # Categories all differ; item 1 has item 0's embedding, item 2 is orthogonal.
    emb = [[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]
    b = batch([1.0, 0.9, 0.5], [0, 1, 2], emb)
    # relevance [1, 0.8, 0]; sim(1, 0) = 0.5*0 + 0.5*1 = 0.5, sim(2, 0) = 0.
    # lam 0.3: item 1 gains 0.3*0.8 - 0.7*0.5 = -0.11 < item 2's 0 -> item 2 comes second.
    assert DiversifyByMMR(lam=0.3, category_weight=0.5)(b, k=3).tolist() == [0, 2, 1]
    # Without embeddings only categories count, and they all differ: score order.
    no_emb = batch([1.0, 0.9, 0.5], [0, 1, 2])
    assert DiversifyByMMR(lam=0.3)(no_emb, k=3).tolist() == [0, 1, 2]


def test_mmr_first_pick_is_top_score_even_with_lam_zero() -> None:
    b = batch([0.2, 0.9, 0.5], [0, 0, 1])
    order = DiversifyByMMR(lam=0.0)(b, k=2)
    assert order.tolist() == [1, 2]


@pytest.mark.parametrize("operator", [DiversifyByMMR(), DiversifyByMMR(lam=0.1), TruncateToK()])
@pytest.mark.parametrize("k", [0, 1, 5, 12, 40])
def test_orders_are_distinct_int64_and_at_most_k(operator: object, k: int) -> None:
    rng = np.random.default_rng(k)
    b = RerankInput(
        item_ids=np.arange(12, dtype=np.int64),
        scores=np.round(rng.random(12), 1).astype(np.float32),  # rounding makes ties
        categories=rng.integers(0, 2, 12),
        embeddings=rng.normal(size=(12, 3)).astype(np.float32),
    )
    order = operator(b, k)
    assert order.dtype == np.int64
    assert len(order) == min(k, 12)
    assert len(set(order.tolist())) == len(order)
    assert ((order >= 0) & (order < 12)).all()


def test_mmr_flat_scores_and_zero_embeddings_do_not_break() -> None:
    b = batch([0.5, 0.5, 0.5], [0, 0, 1], [[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    # relevance all 0; after item 0, item 1 has similarity 0.5 (category), item 2 has 0 -> 2.
    assert DiversifyByMMR(lam=0.5)(b, k=3).tolist() == [0, 2, 1]


def test_truncate_keeps_the_first_k() -> None:
    assert TruncateToK()(batch([3.0, 1.0, 2.0], [0, 0, 0]), k=2).tolist() == [0, 1]


def test_apply_chain_maps_back_to_the_original_batch() -> None:
    b = batch([1.0, 0.9, 0.8, 0.7, 0.6], [0, 0, 1, 1, 0])
    # MMR(lam=0.3) over all five, relevance [1, .75, .5, .25, 0]: 0, then 2 (the other category,
    # 0.15 vs 1's -0.475), then 1 (-0.475) before 3 (-0.625); item 4 is cut by k=4.
    # Truncate then sees those four as positions 0..3 and keeps them, mapped back to [0, 2, 1, 3].
    chain = [DiversifyByMMR(lam=0.3), TruncateToK()]
    assert apply_chain(chain, b, k=4).tolist() == [0, 2, 1, 3]

    class Reverse:
        def __call__(self, sub: RerankInput, k: int) -> np.ndarray:
            return np.arange(min(k, len(sub)))[::-1].astype(np.int64)

    # Reverse sees MMR's [0, 2, 1, 3] and reverses it: original indices [3, 1, 2, 0].
    assert apply_chain([DiversifyByMMR(lam=0.3), Reverse()], b, k=4).tolist() == [3, 1, 2, 0]
    assert apply_chain([], b, k=3).tolist() == [0, 1, 2]


def test_apply_chain_rejects_an_operator_that_breaks_the_protocol() -> None:
    class Repeat:
        def __call__(self, sub: RerankInput, k: int) -> np.ndarray:
            return np.zeros(k, dtype=np.int64)

    with pytest.raises(ValueError, match="invalid order"):
        apply_chain([Repeat()], batch([1.0, 0.5], [0, 1]), k=2)
    with pytest.raises(ValueError, match="k must be"):
        apply_chain([], batch([1.0], [0]), k=-1)


def test_rerank_input_rejects_mismatched_fields() -> None:
    with pytest.raises(ValueError, match="field lengths"):
        RerankInput(np.arange(2), np.zeros(2, np.float32), np.zeros(3, np.int64), None)


def test_build_chain() -> None:
    chain = build_chain([{"name": "mmr", "lam": 0.4}, {"name": "truncate"}])
    assert chain == [DiversifyByMMR(lam=0.4), TruncateToK()]
    assert set(OPERATORS) == {
        "dedup", "exclude_categories", "cap_per_category", "scatter", "cover_categories", "mmr", "dpp", "truncate"
    }


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ([{"name": "mrr"}], "'mrr'"),
        ([{"lam": 0.5}], "None"),
        ([{"name": "mmr", "lambda": 0.5}], "'mmr'"),
        ([{"name": "mmr", "lam": 1.5}], "'mmr'"),
        ([{"name": "truncate", "k": 3}], "'truncate'"),
    ],
)
def test_build_chain_errors_name_the_operator(spec: list[dict], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        build_chain(spec)
