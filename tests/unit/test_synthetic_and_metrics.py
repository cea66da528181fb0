"""Synthetic data, the per-user time split, roc_auc, recall_at_k and the popular channel."""
from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest

from cascade.metrics import recall_at_k, recall_per_user, roc_auc
from cascade.recall.popular import popular_items
from cascade.schema import Dataset, Interactions, time_split
from export.synthetic import EPOCH, SPAN_S, generate

SIZES = dict(n_users=60, n_items=300, n_interactions=3_000, n_categories=6)


@pytest.fixture(scope="module")
def synthetic() -> Dataset:
    return generate(**SIZES, seed=11)


def test_generate_is_deterministic_for_a_seed(synthetic: Dataset) -> None:
    again = generate(**SIZES, seed=11)
    for f in fields(Dataset):
        a, b = getattr(synthetic, f.name), getattr(again, f.name)
        if isinstance(a, Interactions):
            for g in fields(Interactions):
                np.testing.assert_array_equal(getattr(a, g.name), getattr(b, g.name), err_msg=g.name)
        elif isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=f.name)
        else:
            assert a == b, f.name
    other = generate(**SIZES, seed=12)
    assert not np.array_equal(other.interactions.item, synthetic.interactions.item)


def test_generate_sizes_schema_and_positive_rate(synthetic: Dataset) -> None:
    assert synthetic.n_users == SIZES["n_users"]
    assert synthetic.n_items == SIZES["n_items"]
    assert synthetic.n_categories == SIZES["n_categories"]
    log = synthetic.interactions
    assert len(log) == SIZES["n_interactions"]
    assert synthetic.validate() is synthetic
    assert (log.user.dtype, log.item.dtype, log.ts.dtype, log.label.dtype) == (np.int64, np.int64, np.int64, np.float32)
    assert synthetic.item_numeric.dtype == np.float32
    assert 0.1 < log.label.mean() < 0.6
    assert log.ts.min() >= EPOCH and log.ts.max() < EPOCH + SPAN_S
    # sorted by (user, ts); every user has at least 5 interactions
    key = log.user * (SPAN_S + 1) + (log.ts - EPOCH)
    assert (np.diff(key) >= 0).all()
    assert np.bincount(log.user, minlength=synthetic.n_users).min() >= 5


def test_generate_gives_every_user_at_least_five_interactions_even_beyond_the_request() -> None:
    """Current behaviour: n_interactions is a target only above 5 per user (here 30 x 5 > 100)."""
    small = generate(n_users=30, n_items=100, n_interactions=100, n_categories=4, seed=0)
    assert len(small.interactions) == 150


def test_time_split_cuts_by_timestamp_and_keeps_a_seconds_events_together() -> None:
    user = np.array([1, 0, 2, 1, 0, 0, 0, 0, 1, 0])
    ts = np.array([40, 9, 5, 10, 1, 2, 3, 4, 30, 9])  # two events at second 9 (user 0)
    log = Interactions.sorted(user, np.zeros(10), ts, np.zeros(10))
    split = time_split(log, 0.2, 0.3)
    assert (split.train.astype(int) + split.valid + split.test == 1).all()
    # sorted ts 1 2 3 4 5 9 9 10 30 40: train before ts[5] = 9, test from ts[7] = 10
    assert sorted(log.ts[split.train].tolist()) == [1, 2, 3, 4, 5]
    assert sorted(log.ts[split.valid].tolist()) == [9, 9]
    assert sorted(log.ts[split.test].tolist()) == [10, 30, 40]


def test_no_training_row_is_dated_after_a_held_out_one(synthetic: Dataset) -> None:
    log = synthetic.interactions
    split = time_split(log, 0.1, 0.2)
    assert log.ts[split.train].max() < log.ts[split.valid].min() <= log.ts[split.valid].max() < log.ts[split.test].min()
    assert abs(split.test.mean() - 0.2) < 0.01 and abs(split.valid.mean() - 0.1) < 0.01


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),  # pairs won: 0.35>0.1, 0.8>0.1, 0.8>0.4
        ([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9], 0.875),  # a tie counts one half: (1 + .5 + 2) / 4
        ([1, 0, 1, 0], [0.3, 0.3, 0.3, 0.3], 0.5),  # all tied
        ([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1], 1.0),
        ([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9], 0.0),
        # positives 2, 2, 1 vs negatives 3, 2: each positive 2 ties the negative 2 (.5 each) -> 1 / 6
        ([0, 1, 1, 0, 1], [3, 2, 2, 2, 1], 1 / 6),
    ],
)
def test_roc_auc_hand_examples(labels: list[int], scores: list[float], expected: float) -> None:
    got = roc_auc(np.array(labels, dtype=np.float32), np.array(scores))
    assert got == pytest.approx(expected)


def test_roc_auc_matches_the_pair_count_on_random_data() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.3
    scores = rng.integers(0, 20, 200).astype(np.float64)  # many ties
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(labels, scores) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_roc_auc_is_nan_with_one_class() -> None:
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))
    assert math.isnan(roc_auc(np.array([0, 0]), np.array([0.2, 0.3])))


def test_recall_at_k() -> None:
    retrieved = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    relevant = [{2, 3}, set(), {4, 5, 6, 7}]
    # top 2 -- user 0: {2} of 2 -> 1/2; user 1 has none: skipped; user 2: {7} of 4 -> 1/4.
    assert recall_at_k(retrieved, relevant, 2) == pytest.approx((1 / 2 + 1 / 4) / 2)
    # top 3 -- user 0: {2, 3} -> 1; user 2 still {7} -> 1/4.
    assert recall_at_k(retrieved, relevant, 3) == pytest.approx((1 + 1 / 4) / 2)
    assert math.isnan(recall_at_k(retrieved, [set(), set(), set()], 2))
    per_user = recall_per_user(retrieved, relevant, 2)
    assert per_user[0] == 0.5 and math.isnan(per_user[1]) and per_user[2] == 0.25


def test_popular_items_order_ties_by_id_and_scores() -> None:
    positives = np.array([3, 5, 0, 5, 3, 1], dtype=np.int64)
    ids, scores = popular_items(positives, 4)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert ids.tolist() == [1, 3, 0, 4]
    assert scores == pytest.approx(np.log1p([5, 5, 3, 3]))
    all_ids, _ = popular_items(positives, 100)
    assert all_ids.tolist() == [1, 3, 0, 4, 5, 2]
    assert popular_items(positives, 0)[0].tolist() == []
