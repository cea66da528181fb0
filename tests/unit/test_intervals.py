"""Bootstrap intervals over users: what they must be at the edges, and that the weighted shortcut is the
same as materialising each resample."""
from __future__ import annotations

import time

import numpy as np
import pytest

from cascade.intervals import METRICS, UserBootstrap, mean_interval, ratio_of_means
from cascade.metrics import gauc, log_loss, roc_auc


def rows(n: int, n_users: int, seed: int = 0, signal: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, labels, probabilities) with scores that rank positives higher by `signal`; scores are
    rounded so ties occur."""
    rng = np.random.default_rng(seed)
    users, labels = rng.integers(0, n_users, n), (rng.random(n) < 0.4).astype(np.float32)
    scores = np.round(1.0 / (1.0 + np.exp(-(signal * labels + rng.normal(size=n) - 0.5))), 2)
    return users, labels, scores


def test_a_perfect_scorer_has_auc_and_gauc_intervals_of_exactly_one() -> None:
    users, labels, _ = rows(2_000, 100)
    intervals = UserBootstrap(users, labels, 100, seed=1).intervals(np.where(labels > 0.5, 0.9, 0.1))
    for metric in ("auc", "gauc"):
        assert (intervals[metric].point, intervals[metric].low, intervals[metric].high) == (1.0, 1.0, 1.0)


def test_the_intervals_contain_the_point_and_narrow_with_more_rows() -> None:
    widths = []
    for n, n_users in ((2_000, 50), (40_000, 1_000)):
        users, labels, scores = rows(n, n_users)
        intervals = UserBootstrap(users, labels, 200, seed=3).intervals(scores)
        for metric in METRICS:
            assert intervals[metric].low <= intervals[metric].point <= intervals[metric].high, metric
        widths.append({m: intervals[m].high - intervals[m].low for m in METRICS})
    for metric in METRICS:
        assert widths[1][metric] < widths[0][metric] / 2, metric  # 20x the users: about 1/4.5 the width


def test_the_difference_of_a_model_with_itself_is_zero_and_of_a_better_model_is_above_zero() -> None:
    users, labels, scores = rows(5_000, 200)
    _, _, weaker = rows(5_000, 200, signal=0.3)  # same users and labels: the draws share the seed
    bootstrap = UserBootstrap(users, labels, 200, seed=5)
    for interval in bootstrap.difference(scores, scores).values():
        assert (interval.point, interval.low, interval.high) == (0.0, 0.0, 0.0)
    better = bootstrap.difference(scores, weaker)
    assert better["auc"].low > 0 and better["gauc"].low > 0 and better["logloss"].high < 0
    assert better["auc"].point == pytest.approx(roc_auc(labels, scores) - roc_auc(labels, weaker))


def test_intervals_are_fixed_by_the_seed() -> None:
    users, labels, scores = rows(3_000, 100)
    first, again = (UserBootstrap(users, labels, 50, seed=11).intervals(scores) for _ in range(2))
    other = UserBootstrap(users, labels, 50, seed=12).intervals(scores)
    assert first == again and first != other


def test_each_replicate_is_the_metric_on_the_resample_materialised() -> None:
    users, labels, scores = rows(600, 30)
    bootstrap = UserBootstrap(users, labels, 5, seed=2)
    replicates = bootstrap.replicates(scores)
    ids = np.unique(users)
    for b in range(bootstrap.resamples):
        # each draw of a user becomes a user of its own with that user's rows
        parts = [(np.flatnonzero(users == ids[u]), copy) for u in range(len(ids)) for copy in range(bootstrap.counts[b, u])]
        taken = np.concatenate([index for index, _ in parts])
        new_users = np.concatenate([np.full(len(index), i) for i, (index, _) in enumerate(parts)])
        assert replicates["auc"][b] == pytest.approx(roc_auc(labels[taken], scores[taken]))
        assert replicates["gauc"][b] == pytest.approx(gauc(new_users, labels[taken], scores[taken]))
        assert replicates["logloss"][b] == pytest.approx(log_loss(labels[taken], scores[taken]))


def test_two_hundred_resamples_of_ten_thousand_rows_take_well_under_a_second() -> None:
    users, labels, scores = rows(10_000, 500)
    started = time.perf_counter()
    UserBootstrap(users, labels, 200, seed=0).intervals(scores)
    assert time.perf_counter() - started < 1.0  # about 0.04 s when measured


def test_scores_of_another_length_are_refused() -> None:
    users, labels, scores = rows(100, 10)
    with pytest.raises(ValueError, match="scores of shape"):
        UserBootstrap(users, labels, 10).intervals(scores[:-1])


def test_a_ratio_of_means_holds_its_point_and_leaves_out_users_with_no_value() -> None:
    rng = np.random.default_rng(3)
    b = rng.random(500)
    a = 2.0 * b + rng.normal(0.0, 0.05, 500)
    interval = ratio_of_means(np.r_[a, np.nan], np.r_[b, 1.0], resamples=200, seed=1)
    assert interval.point == pytest.approx(a.sum() / b.sum())
    assert interval.low < interval.point < interval.high and interval.high - interval.low < 0.1
    same = ratio_of_means(b, b)
    assert (same.point, same.low, same.high) == (1.0, 1.0, 1.0)
    assert np.isnan(ratio_of_means(b, np.zeros(500)).point)
    with pytest.raises(ValueError, match="paired"):
        ratio_of_means(b, b[:-1])


def test_a_mean_interval_holds_the_mean_leaves_out_nans_and_narrows_with_more_users() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(0.95, 0.03, 2_000)
    few = mean_interval(values[:100], seed=1)
    many = mean_interval(np.r_[values, np.nan], seed=1)
    assert many.point == pytest.approx(values.mean())
    assert few.low < few.point < few.high and many.low < many.point < many.high
    assert many.high - many.low < few.high - few.low
    assert many.low < 0.95 < many.high
    constant = mean_interval(np.full(10, 0.5))
    assert (constant.low, constant.high) == (0.5, 0.5)
