"""GAUC, log loss, NDCG@K and Kendall's tau-b on hand-computed examples (roc_auc and recall_at_k are
covered in test_synthetic_and_metrics.py)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from cascade.metrics import gauc, kendall_tau, log_loss, ndcg_at_k, roc_auc


def test_gauc_weights_users_by_impressions_and_skips_single_class_users() -> None:
    # rows interleaved across users on purpose; user ids are not 0..U-1
    users = np.array([7, 3, 7, 9, 7, 3, 5, 5, 5, 5, 9])
    labels = np.array([1, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1])
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.95, 0.6, 0.4, 0.4, 0.1, 0.2, 0.7])
    # user 7: positive 0.9 beats 0.5, loses to 0.95 -> 1/2, 3 impressions
    # user 3: two positives only -> skipped
    # user 9: positive 0.7 beats negative 0.2 -> 1, 2 impressions
    # user 5: positive 0.4 ties 0.4 (1/2) and beats 0.1; positive 0.2 loses to 0.4, beats 0.1 -> 2.5 / 4, 4 impressions
    expected = (3 * 0.5 + 2 * 1.0 + 4 * 0.625) / 9
    assert gauc(users, labels, scores) == pytest.approx(expected)


def test_gauc_equals_auc_for_one_user_and_is_nan_without_a_mixed_user() -> None:
    labels = np.array([0, 1, 0, 1, 1])
    scores = np.array([0.5, 0.5, 0.2, 0.9, 0.1])
    assert gauc(np.zeros(5, np.int64), labels, scores) == pytest.approx(roc_auc(labels, scores))
    assert math.isnan(gauc(np.array([0, 0, 1]), np.array([1, 1, 0]), np.array([0.2, 0.3, 0.4])))
    assert math.isnan(gauc(np.array([], np.int64), np.array([]), np.array([])))


def test_gauc_matches_a_per_user_loop_on_random_data() -> None:
    rng = np.random.default_rng(3)
    users = rng.integers(0, 30, 600)
    labels = rng.random(600) < 0.3
    scores = rng.integers(0, 8, 600).astype(np.float32)  # many ties
    num = den = 0.0
    for u in np.unique(users):
        mine = users == u
        auc = roc_auc(labels[mine], scores[mine])
        if not math.isnan(auc):
            num, den = num + auc * mine.sum(), den + mine.sum()
    assert gauc(users, labels, scores) == pytest.approx(num / den)


def test_log_loss_hand_values_and_clipping() -> None:
    assert log_loss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    # a confident mistake costs -log(eps), not infinity
    assert log_loss(np.array([0, 1]), np.array([1.0, 0.0])) == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert log_loss(np.array([1, 0]), np.array([1.0, 0.0])) == pytest.approx(1e-7, abs=1e-9)
    assert log_loss(np.array([1]), np.array([0.5]), eps=0.6) == pytest.approx(-math.log(0.4))  # clipped up to 1 - eps
    assert math.isnan(log_loss(np.array([]), np.array([])))


def test_ndcg_at_k_by_hand() -> None:
    ranked = [np.array([5, 3, 9, 1]), np.array([2, 4]), np.array([8, 8, 8])]
    relevant = [{3, 1}, {2, 4, 6, 8}, set()]
    d = [1 / math.log2(i + 2) for i in range(3)]  # 1, 0.6309, 0.5
    # user 0, k=3: one hit at position 2 of 3 (item 1 is 4th); ideal puts min(2, 3) = 2 hits on top
    user0 = d[1] / (d[0] + d[1])
    # user 1: a list shorter than k, two hits on top; ideal has min(4, 3) = 3 hits
    user1 = (d[0] + d[1]) / (d[0] + d[1] + d[2])
    # user 2 has nothing relevant: skipped
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx((user0 + user1) / 2)
    assert ndcg_at_k([np.array([1, 2, 3])], [{1, 2}], 2) == pytest.approx(1.0)
    assert ndcg_at_k([np.array([4, 5, 1])], [{1}], 2) == 0.0
    assert math.isnan(ndcg_at_k([np.array([1])], [set()], 5))


def _tau_b_by_pairs(a: list[float], b: list[float]) -> float:
    concordant = discordant = ties_a = ties_b = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        s = np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
        concordant += s > 0
        discordant += s < 0
        ties_a += a[i] == a[j]
        ties_b += b[i] == b[j]
    n0 = len(a) * (len(a) - 1) / 2
    return (concordant - discordant) / math.sqrt((n0 - ties_a) * (n0 - ties_b))


def test_kendall_tau_perfect_reversed_and_hand_ties() -> None:
    x = np.arange(10.0)
    assert kendall_tau(x, 3 * x + 1) == pytest.approx(1.0)
    assert kendall_tau(x, -x) == pytest.approx(-1.0)
    # one discordant pair of three: (2 - 1) / 3
    assert kendall_tau(np.array([1.0, 2.0, 3.0]), np.array([2.0, 1.0, 3.0])) == pytest.approx(1 / 3)
    # a tie in a: 5 concordant, 0 discordant, 6 pairs, 1 tied in a -> 5 / sqrt(5 * 6)
    assert kendall_tau(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(5 / math.sqrt(30))
    assert math.isnan(kendall_tau(np.ones(4), x[:4]))


def test_kendall_tau_matches_pair_count_with_ties_across_chunks() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 6, 70).astype(float), rng.integers(0, 4, 70).astype(float)
    assert kendall_tau(a, b, chunk=16) == pytest.approx(_tau_b_by_pairs(a.tolist(), b.tolist()))
    with pytest.raises(ValueError):
        kendall_tau(a, b[:10])
