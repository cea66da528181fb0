"""Item-to-item co-occurrence: build on a hand-made log, look up with recency decay."""
from __future__ import annotations

import time

import numpy as np
import pytest

from cascade.recall.item_to_item import ItemToItemIndex, build_item_to_item, item_to_item_candidates

# Positives sorted by (user, time): user 0 clicks 0,1,2; user 1 clicks 0,1,3; user 2 clicks 4,0.
USERS = np.array([0, 0, 0, 1, 1, 1, 2, 2])
ITEMS = np.array([0, 1, 2, 0, 1, 3, 4, 0])


def test_counts_normalised_by_popularity_within_the_window() -> None:
    index = build_item_to_item(USERS, ITEMS, n_items=6, window=2, top_m=3)
    pop = np.array([3, 2, 1, 1, 1, 0])
    # window 2: only adjacent positives pair up; (0,1) twice, (1,2), (1,3), (4,0) once; (0,2) never.
    assert index.neighbours[0].tolist() == [1, 4, -1]
    assert index.weights[0, 0] == pytest.approx(2 / np.sqrt(pop[0] * pop[1]))
    assert index.weights[0, 1] == pytest.approx(1 / np.sqrt(pop[0] * pop[4]))
    assert index.neighbours[1].tolist() == [0, 2, 3]  # 2/sqrt(6) > 1/sqrt(2) twice (ties by id)
    assert index.neighbours[5].tolist() == [-1, -1, -1] and index.weights[5].tolist() == [0, 0, 0]
    assert index.neighbours.dtype == np.int64 and index.weights.dtype == np.float32


def test_wider_window_and_top_m_cut() -> None:
    index = build_item_to_item(USERS, ITEMS, n_items=6, window=3, top_m=1)
    assert index.neighbours.shape == (6, 1)
    assert index.neighbours[2, 0] == 1  # 2 pairs with 1 (gap 1) and 0 (gap 2): 1/sqrt(2) > 1/sqrt(3)
    # no pair across users: user 1's 3 and user 2's 4 are adjacent in the log but never pair
    assert 4 not in build_item_to_item(USERS, ITEMS, 6, window=3, top_m=5).neighbours[3].tolist()


def test_lookup_sums_decayed_votes_and_excludes_history() -> None:
    index = ItemToItemIndex(
        neighbours=np.array([[1, 2], [2, 3], [-1, -1], [-1, -1]], np.int64),
        weights=np.array([[1.0, 0.5], [1.0, 0.25], [0, 0], [0, 0]], np.float32),
    )
    ids, scores = item_to_item_candidates(index, np.array([-1, -1, 0, 1]), k=5, recent=2, decay=0.5)
    # 1 (age 0) votes 2:1.0, 3:0.25; 0 (age 1) votes 1 (in history: out), 2: 0.5*0.5
    assert ids.tolist() == [2, 3]
    assert scores.tolist() == pytest.approx([1.25, 0.25])
    ids, _ = item_to_item_candidates(index, np.array([-1, 0, 1]), k=5, recent=1, decay=0.5)
    assert ids.tolist() == [2, 3]  # only the most recent item votes
    assert item_to_item_candidates(index, np.array([-1, -1]), k=5)[0].size == 0
    assert item_to_item_candidates(index, np.array([0, 1]), k=1)[0].tolist() == [2]


def test_save_load_round_trip(tmp_path) -> None:
    index = build_item_to_item(USERS, ITEMS, n_items=6, window=3, top_m=2)
    index.save(tmp_path / "i2i.npz")
    back = ItemToItemIndex.load(tmp_path / "i2i.npz")
    assert np.array_equal(back.neighbours, index.neighbours) and np.array_equal(back.weights, index.weights)


def test_half_a_million_positives_build_in_seconds() -> None:
    rng = np.random.default_rng(0)
    n = 500_000
    users = np.sort(rng.integers(0, 5_000, n))
    items = rng.zipf(1.3, n) % 20_000
    started = time.perf_counter()
    index = build_item_to_item(users, items, 20_000, window=5, top_m=50)
    assert time.perf_counter() - started < 15
    assert (index.neighbours[:, 0] >= 0).sum() > 1_000


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="window"):
        build_item_to_item(USERS, ITEMS, 6, window=1)
