"""The filtering and diversifying operators: dedup, exclude_categories, cap_per_category, scatter, dpp."""
from __future__ import annotations

from collections import Counter
from itertools import permutations

import numpy as np
import pytest

from cascade.rerank.base import RerankInput, apply_chain
from cascade.rerank.cover import CoverCategories
from cascade.rerank.dedup import DropDuplicateItems
from cascade.rerank.dpp import JITTER, DiversifyByDPP
from cascade.rerank.filters import ExcludeCategories
from cascade.rerank.max_per_category import CapPerCategory, rank_within_category
from cascade.rerank.registry import build_chain
from cascade.rerank.scatter import ScatterCategories


def ranked(
    categories: list[int],
    scores: list[float] | None = None,
    item_ids: list[int] | None = None,
    embeddings: list[list[float]] | None = None,
) -> RerankInput:
    """A hand-made batch; by default scores fall with position, so input order is score order."""
    n = len(categories)
    return RerankInput(
        item_ids=np.array(item_ids if item_ids is not None else range(100, 100 + n), dtype=np.int64),
        scores=np.array(scores if scores is not None else np.linspace(1.0, 0.1, n), dtype=np.float32),
        categories=np.array(categories, dtype=np.int64),
        embeddings=None if embeddings is None else np.array(embeddings, dtype=np.float32),
    )


def random_batch(n: int, seed: int, n_categories: int = 3) -> RerankInput:
    rng = np.random.default_rng(seed)
    return RerankInput(
        item_ids=rng.integers(0, n // 2 + 1, n),  # repeats, for dedup
        scores=rng.random(n).astype(np.float32),
        categories=rng.integers(0, n_categories, n),
        embeddings=rng.normal(size=(n, 4)).astype(np.float32),
    )


def repeats_within(categories: list[int], window: int) -> bool:
    runs = [categories[i : i + window] for i in range(len(categories))]
    return any(len(set(run)) < len(run) for run in runs)


# --- dedup -------------------------------------------------------------------------------------


def test_dedup_keeps_first_occurrences_in_order() -> None:
    b = ranked([0] * 6, item_ids=[5, 7, 5, 9, 7, 1])
    assert DropDuplicateItems()(b, k=10).tolist() == [0, 1, 3, 5]
    assert DropDuplicateItems()(b, k=2).tolist() == [0, 1]
    assert DropDuplicateItems()(ranked([0, 1, 2]), k=3).tolist() == [0, 1, 2]


# --- exclude_categories --------------------------------------------------------------------------


def test_exclude_categories_drops_only_the_listed_ones() -> None:
    b = ranked([0, 3, 1, 3, 2, 5])
    assert ExcludeCategories((3,))(b, k=10).tolist() == [0, 2, 4, 5]
    assert ExcludeCategories((3, 5))(b, k=2).tolist() == [0, 2]
    assert ExcludeCategories(())(b, k=10).tolist() == [0, 1, 2, 3, 4, 5]
    assert ExcludeCategories((0, 1, 2, 3, 5))(b, k=10).tolist() == []


def test_exclude_categories_takes_the_json_list_as_a_tuple() -> None:
    operator = ExcludeCategories([3, 1])  # type: ignore[arg-type]
    assert operator == ExcludeCategories((3, 1))
    assert operator.categories == (3, 1)
    hash(operator)  # frozen and hashable, like every operator


# --- cap_per_category ----------------------------------------------------------------------------


def test_rank_within_category_counts_earlier_items_of_the_same_category() -> None:
    categories = np.array([4, 4, 1, 4, 1, 7, 4])
    assert rank_within_category(categories).tolist() == [0, 1, 0, 2, 1, 0, 3]


def test_cap_per_category_keeps_the_first_limit_of_each_in_ranking_order() -> None:
    b = ranked([0, 0, 1, 0, 1, 2, 0])
    assert CapPerCategory(2)(b, k=10).tolist() == [0, 1, 2, 4, 5]
    assert CapPerCategory(1)(b, k=10).tolist() == [0, 2, 5]
    assert CapPerCategory(2)(b, k=3).tolist() == [0, 1, 2]
    assert CapPerCategory(2)(ranked([]), k=3).tolist() == []


@pytest.mark.parametrize("seed", range(3))
def test_cap_per_category_holds_on_random_input(seed: int) -> None:
    b = random_batch(30, seed)
    order = CapPerCategory(3)(b, k=30)
    counts = Counter(b.categories[order].tolist())
    assert max(counts.values()) <= 3
    for category, count in counts.items():  # a category is short only when the input ran out
        assert count == min(3, int((b.categories == category).sum()))
    assert order.tolist() == sorted(order.tolist())


# --- scatter -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("categories", "window"),
    [
        ([0, 0, 0, 1, 1, 2], 2),
        ([0, 0, 1, 1, 2, 2, 3], 3),
        ([5, 5, 5, 5, 6, 7, 8, 9, 6, 7], 3),
        ([1, 1, 2, 2, 3, 3], 3),
    ],
)
def test_scatter_spreads_categories_where_one_can(categories: list[int], window: int) -> None:
    assert any(not repeats_within(list(p), window) for p in permutations(categories))  # one exists
    b = ranked(categories)
    order = ScatterCategories(window)(b, k=len(categories))
    placed = b.categories[order].tolist()
    assert sorted(order.tolist()) == list(range(len(categories)))
    assert not repeats_within(placed, window)
    for category in set(categories):  # items of one category keep their relative order
        positions = [i for i in order.tolist() if categories[i] == category]
        assert positions == sorted(positions)


def test_scatter_greedy_example() -> None:
    # window 2: [A, A, B, B, C] -> A B A B C: the second A waits one place for B.
    assert ScatterCategories(2)(ranked([0, 0, 1, 1, 2]), k=5).tolist() == [0, 2, 1, 3, 4]
    assert ScatterCategories(2)(ranked([0, 0, 1, 1, 2]), k=3).tolist() == [0, 2, 1]


def test_scatter_falls_back_to_the_best_remaining_item() -> None:
    # One category only: nothing qualifies, so the ranking stands and no item is lost.
    assert ScatterCategories(3)(ranked([4, 4, 4, 4]), k=4).tolist() == [0, 1, 2, 3]
    # Greedy is best effort: here [3, 0, 4, 1, 2] would avoid repeats, greedy ends with C C.
    order = ScatterCategories(2)(ranked([0, 1, 0, 2, 2]), k=5).tolist()
    assert order == [0, 1, 2, 3, 4]


def test_scatter_window_one_keeps_the_ranking() -> None:
    assert ScatterCategories(1)(ranked([0, 0, 1, 0]), k=4).tolist() == [0, 1, 2, 3]


# --- dpp -----------------------------------------------------------------------------------------


def naive_greedy_dpp(b: RerankInput, theta: float, category_weight: float, k: int) -> list[int]:
    """The documented kernel, built in full, and greedy log-det maximisation by brute force."""
    scores = b.scores.astype(np.float64)
    r = (scores - scores.min()) / (scores.max() - scores.min())
    q = np.exp(theta / (2 * (1 - theta)) * r)
    e = b.embeddings.astype(np.float64) if b.embeddings is not None else None
    same = (b.categories[:, None] == b.categories[None, :]).astype(np.float64)
    if e is None:
        s = same
    else:
        u = e / np.linalg.norm(e, axis=1, keepdims=True)
        s = category_weight * same + (1 - category_weight) * (u @ u.T)
    np.fill_diagonal(s, 1.0 + JITTER)
    kernel = q[:, None] * s * q[None, :]
    picked: list[int] = []
    for _ in range(k):
        rest = [i for i in range(len(b)) if i not in picked]
        log_det = [np.linalg.slogdet(kernel[np.ix_(picked + [i], picked + [i])])[1] for i in rest]
        picked.append(rest[int(np.argmax(log_det))])
    return picked


@pytest.mark.parametrize(
    ("theta", "category_weight", "with_embeddings"), [(0.3, 0.5, True), (0.7, 0.2, True), (0.5, 0.5, False)]
)
def test_dpp_matches_brute_force_greedy_map(
    theta: float, category_weight: float, with_embeddings: bool
) -> None:
    b = random_batch(10, seed=int(theta * 10))
    if not with_embeddings:
        b = RerankInput(b.item_ids, b.scores, b.categories, None)
    order = DiversifyByDPP(theta=theta, category_weight=category_weight)(b, k=6)
    assert order.tolist() == naive_greedy_dpp(b, theta, category_weight, k=6)


@pytest.mark.parametrize("theta", [0.05, 0.5, 0.95])
def test_dpp_first_pick_is_the_top_score(theta: float) -> None:
    b = random_batch(20, seed=1)
    assert DiversifyByDPP(theta=theta)(b, k=5)[0] == int(np.argmax(b.scores))


def test_dpp_with_theta_near_one_follows_the_scores() -> None:
    b = random_batch(30, seed=2)
    order = DiversifyByDPP(theta=0.999)(b, k=10)
    assert order.tolist() == np.argsort(-b.scores, kind="stable")[:10].tolist()


def test_dpp_picks_the_diverse_item_before_a_near_duplicate() -> None:
    emb = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    b = ranked([0, 0, 1], scores=[1.0, 0.95, 0.5], embeddings=emb)
    assert DiversifyByDPP(theta=0.7)(b, k=3).tolist() == [0, 2, 1]
    # Distinct categories and orthogonal embeddings: nothing to diversify, score order.
    distinct = ranked([0, 1, 2], scores=[1.0, 0.95, 0.5], embeddings=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert DiversifyByDPP(theta=0.7)(distinct, k=3).tolist() == [0, 1, 2]
    # Without embeddings, the shared category alone makes item 1 redundant.
    assert DiversifyByDPP(theta=0.7)(ranked([0, 0, 1], scores=[1.0, 0.95, 0.5]), k=3).tolist() == [0, 2, 1]


def test_dpp_stops_when_gain_vanishes_and_fills_in_score_order() -> None:
    # theta 0.99: q^2 = exp(99 * (r - 1)), about 1e-43 for r = 0 and 3e-22 for r = 0.5, both below
    # MIN_GAIN, so only item 0 is picked by the DPP; the rest follow by score, ties in input order.
    b = ranked([0, 1, 2, 3], scores=[1.0, 0.0, 0.0, 0.5])
    assert DiversifyByDPP(theta=0.99)(b, k=4).tolist() == [0, 3, 1, 2]
    assert DiversifyByDPP(theta=0.99)(b, k=2).tolist() == [0, 3]


def test_dpp_handles_flat_scores_and_zero_embeddings() -> None:
    b = ranked([0, 0, 1], scores=[0.5, 0.5, 0.5], embeddings=[[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    order = DiversifyByDPP()(b, k=3)
    assert order.tolist() == [0, 2, 1]


# --- cover categories --------------------------------------------------------------------------


def test_cover_keeps_a_list_that_already_holds_enough_categories() -> None:
    categories = [0, 1, 0, 2, 3, 0, 0, 1, 0, 0, 2, 4]
    assert CoverCategories(4)(ranked(categories), k=10).tolist() == list(range(10))


def test_cover_brings_the_best_of_each_missing_category_into_the_last_positions() -> None:
    categories = [0] * 12 + [1, 2, 1, 3, 4]  # items 12, 13, 15 are the best of categories 1, 2, 3
    order = CoverCategories(4)(ranked(categories), k=10).tolist()
    assert order == [0, 1, 2, 3, 4, 5, 6, 12, 13, 15]


def test_cover_counts_categories_the_ranking_brings_by_itself() -> None:
    categories = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3]  # category 1 is already at position 2
    assert CoverCategories(4)(ranked(categories), k=10).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 11, 12]


def test_cover_asks_no_more_categories_than_the_input_holds() -> None:
    categories = [0] * 14 + [1]
    assert CoverCategories(4)(ranked(categories), k=10).tolist() == [*range(9), 14]


def test_cover_leaves_positions_after_within_in_rank_order() -> None:
    categories = [0] * 6 + [1, 2]
    assert CoverCategories(3, within=4)(ranked(categories), k=8).tolist() == [0, 1, 6, 7, 2, 3, 4, 5]


@pytest.mark.parametrize("seed", range(30))
def test_cover_reaches_the_categories_the_input_allows_and_keeps_its_prefix(seed: int) -> None:
    b = random_batch(30, seed, n_categories=int(np.random.default_rng(seed).integers(1, 7)))
    b = b.take(np.argsort(-b.scores, kind="stable"))  # rank order, as the rerank receives it
    full = CoverCategories(4)(b, k=30)
    assert sorted(full.tolist()) == list(range(30))
    assert len(set(b.categories[full[:10]].tolist())) >= min(4, len(set(b.categories.tolist())))
    for k in (1, 5, 10, 12):
        assert CoverCategories(4)(b, k=k).tolist() == full[:k].tolist()


# --- every operator: the protocol, and parameter checks --------------------------------------------

FILTERS = [DropDuplicateItems(), ExcludeCategories((1,)), CapPerCategory(2)]
REORDERS = [ScatterCategories(3), CoverCategories(2, within=5), DiversifyByDPP(), DiversifyByDPP(theta=0.2, category_weight=1.0)]


@pytest.mark.parametrize("operator", FILTERS + REORDERS)
@pytest.mark.parametrize("k", [0, 1, 5, 12, 40])
def test_orders_are_distinct_int64_and_at_most_k(operator: object, k: int) -> None:
    b = random_batch(12, seed=k)
    order = operator(b, k)  # type: ignore[operator]
    assert order.dtype == np.int64
    assert len(set(order.tolist())) == len(order)
    assert ((order >= 0) & (order < 12)).all()
    if operator in REORDERS:
        assert len(order) == min(k, 12)
    else:  # filters may return fewer than k
        assert len(order) <= min(k, 12)


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: CapPerCategory(0), "CapPerCategory: limit"),
        (lambda: CapPerCategory(1.5), "CapPerCategory: limit"),  # type: ignore[arg-type]
        (lambda: ScatterCategories(0), "ScatterCategories: window"),
        (lambda: ScatterCategories(True), "ScatterCategories: window"),
        (lambda: CoverCategories(0), "CoverCategories: min_categories"),
        (lambda: CoverCategories(4, within=0), "CoverCategories: within"),
        (lambda: DiversifyByDPP(theta=1.0), "DiversifyByDPP: theta"),
        (lambda: DiversifyByDPP(theta=0.0), "DiversifyByDPP: theta"),
        (lambda: DiversifyByDPP(category_weight=1.5), "DiversifyByDPP: category_weight"),
        (lambda: ExcludeCategories("3"), "ExcludeCategories: categories"),  # type: ignore[arg-type]
        (lambda: ExcludeCategories([1.5]), "ExcludeCategories: categories"),  # type: ignore[list-item]
        (lambda: ExcludeCategories(3), "ExcludeCategories: categories"),  # type: ignore[arg-type]
    ],
)
def test_bad_parameters_name_the_operator_and_parameter(make: object, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"name": "cap_per_category", "limit": 0}, "'cap_per_category'.*limit"),
        ({"name": "cap_per_category"}, "'cap_per_category'.*limit"),
        ({"name": "scatter", "window": -1}, "'scatter'.*window"),
        ({"name": "dpp", "theta": 1.2}, "'dpp'.*theta"),
        ({"name": "exclude_categories", "categories": "3"}, "'exclude_categories'.*categories"),
        ({"name": "dedup", "k": 3}, "'dedup'"),
    ],
)
def test_build_chain_surfaces_bad_parameters(entry: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        build_chain([entry])


# --- the chain -----------------------------------------------------------------------------------


def test_full_chain_filters_caps_scatters_and_diversifies() -> None:
    spec = [
        {"name": "dedup"},
        {"name": "exclude_categories", "categories": [3]},
        {"name": "cap_per_category", "limit": 2},
        {"name": "scatter", "window": 3},
        {"name": "dpp", "theta": 0.7},
        {"name": "truncate"},
    ]
    rng = np.random.default_rng(7)
    b = ranked(
        categories=[0, 0, 0, 3, 1, 0, 3, 1, 2, 1, 2, 4, 0, 2],
        item_ids=[10, 11, 10, 12, 13, 14, 15, 16, 11, 17, 18, 19, 20, 21],
        embeddings=rng.normal(size=(14, 4)).tolist(),
    )
    k = 6
    order = apply_chain(build_chain(spec), b, k)
    ids = b.item_ids[order].tolist()
    categories = b.categories[order].tolist()
    assert ((order >= 0) & (order < len(b))).all()
    assert len(order) <= k
    assert len(set(ids)) == len(ids)
    assert 3 not in categories
    assert max(Counter(categories).values()) <= 2
    # Only the last operator cuts to k: dedup drops the repeated ids (2, 8), the filter category 3
    # (3, 6), the cap the third category-0 and category-1 items (5, 12, 9); seven candidates
    # (0 1 4 7 10 11 13) reach scatter and DPP, which keep six: the chain returns a full k.
    assert len(order) == k
    assert set(order.tolist()) <= {0, 1, 4, 7, 10, 11, 13}
