"""Exposure rules: filtering shown items, the refill fallback, buffer expiry."""
from __future__ import annotations

import numpy as np

from cascade.exposure import expired_before, filter_exposed, unexposed_mask

CANDIDATES = np.array([10, 11, 12, 13, 14], dtype=np.int64)
EXPOSED = np.array([13, 11, 99], dtype=np.int64)


def test_unexposed_mask() -> None:
    assert unexposed_mask(CANDIDATES, EXPOSED).tolist() == [True, False, True, False, True]


def test_filter_keeps_unexposed_in_candidate_order() -> None:
    kept = filter_exposed(CANDIDATES, EXPOSED, min_keep=2)
    assert kept.tolist() == [0, 2, 4]
    assert kept.dtype == np.int64


def test_refill_appends_exposed_in_candidate_order_up_to_min_keep() -> None:
    assert filter_exposed(CANDIDATES, EXPOSED, min_keep=4).tolist() == [0, 2, 4, 1]
    assert filter_exposed(CANDIDATES, EXPOSED, min_keep=9).tolist() == [0, 2, 4, 1, 3]


def test_all_exposed_falls_back_to_candidate_order() -> None:
    assert filter_exposed(CANDIDATES, CANDIDATES, min_keep=0).tolist() == []
    assert filter_exposed(CANDIDATES, CANDIDATES[::-1], min_keep=3).tolist() == [0, 1, 2]


def test_empty_inputs() -> None:
    no_items = np.empty(0, dtype=np.int64)
    assert filter_exposed(no_items, EXPOSED, min_keep=5).tolist() == []
    assert filter_exposed(CANDIDATES, no_items, min_keep=1).tolist() == [0, 1, 2, 3, 4]
    assert unexposed_mask(CANDIDATES, no_items).all()


def test_expired_before() -> None:
    assert expired_before(now=1_000.0, ttl_s=60.0) == 940.0


def test_exposed_union_of_both_buffers() -> None:
    from cascade.exposure import exposed_union

    union = exposed_union(np.array([3, 1]), np.array([1, 7]))
    assert union.tolist() == [1, 3, 7] and union.dtype == np.int64
    assert exposed_union(np.array([], dtype=np.int64), np.array([], dtype=np.int64)).tolist() == []
    kept = filter_exposed(CANDIDATES, exposed_union(np.array([13]), np.array([11])), min_keep=0)
    assert CANDIDATES[kept].tolist() == [10, 12, 14]


def test_refill_takes_items_only_served_before_items_the_client_saw() -> None:
    candidates = np.array([10, 11, 12, 13, 14])
    served, seen = np.array([10, 12, 13]), np.array([11, 13])  # 13 in both buffers counts as seen
    exposed = np.union1d(served, seen)
    assert filter_exposed(candidates, exposed, min_keep=3, seen=seen).tolist() == [4, 0, 2]
    assert filter_exposed(candidates, exposed, min_keep=5, seen=seen).tolist() == [4, 0, 2, 1, 3]
    assert filter_exposed(candidates, exposed, min_keep=1, seen=seen).tolist() == [4]


def test_mask_ignores_exposed_ids_far_outside_the_candidates() -> None:
    exposed = np.array([-5, 11, 2**62, 14], dtype=np.int64)
    assert unexposed_mask(CANDIDATES, exposed).tolist() == [True, False, True, True, False]


def test_mask_matches_isin_on_random_ids() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        items, exposed = rng.integers(0, 300, 200), rng.integers(-50, 400, rng.integers(0, 60))
        assert unexposed_mask(items, exposed).tolist() == (~np.isin(items, exposed)).tolist()
