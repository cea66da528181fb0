"""Bootstrap confidence intervals of AUC, GAUC and LogLoss over labelled rows, resampling users.

Rows are resampled by user, not one by one: GAUC averages per-user AUCs and a user's rows are not
independent of each other, so the user is the unit drawn. A resample draws as many users as there
are, with replacement; a user drawn k times counts k times. Every metric is then a weighted sum over
the original rows with the user's draw count as weight, so no resample is materialised:

* LogLoss and GAUC: a user's AUC is the same however often its rows are repeated, so both reduce to
  per-user sums weighted by counts, one matrix product for all resamples;
* AUC: pairs of a positive and a negative row weigh the product of their users' counts, summed over
  score-tie groups in score order, a few passes over a [resamples, rows] matrix (chunked).

One `UserBootstrap` draws its resamples once, so every model scored with it, and the difference of
two models (`difference`), is judged on the same resamples.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.metrics import LOG_LOSS_EPS, gauc, group_aucs, log_loss, roc_auc

METRICS: tuple[str, ...] = ("auc", "gauc", "logloss")
_CHUNK_CELLS = 4_000_000  # resamples x rows held at once by the AUC pass (32 MB of float64)


@dataclass(frozen=True)
class Interval:
    """A point estimate on all rows and the percentile bootstrap interval around it."""

    point: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"point": self.point, "low": self.low, "high": self.high}


def _points(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The metrics on all rows, by cascade.metrics, so they are the figures the report prints."""
    return {"auc": roc_auc(labels, scores), "gauc": gauc(users, labels, scores), "logloss": log_loss(labels, scores)}


class UserBootstrap:
    """`resamples` draws of users with replacement over the rows (`users`, `labels`), fixed by `seed`."""

    def __init__(self, users: np.ndarray, labels: np.ndarray, resamples: int = 200, seed: int = 0,
                 level: float = 0.95) -> None:
        if resamples < 1 or not 0.0 < level < 1.0:
            raise ValueError(f"need resamples >= 1 and 0 < level < 1, got {resamples} and {level}")
        self.users, self.labels = np.asarray(users), np.asarray(labels)
        if self.users.shape != self.labels.shape or self.users.ndim != 1:
            raise ValueError(f"users and labels must be 1-d of one length, got {self.users.shape} and {self.labels.shape}")
        self.positive = self.labels > 0.5
        self.level = level
        ids, self.user_index = np.unique(self.users, return_inverse=True)
        n_users = len(ids)
        draws = np.random.default_rng(seed).integers(0, max(n_users, 1), (resamples, n_users))
        offsets = (np.arange(resamples) * n_users)[:, None]
        # counts[b, u]: how often resample b drew user u
        self.counts = np.bincount((draws + offsets).ravel(), minlength=resamples * n_users).reshape(resamples, n_users)
        self.user_rows = np.bincount(self.user_index, minlength=n_users).astype(np.float64)

    @property
    def resamples(self) -> int:
        return int(self.counts.shape[0])

    def replicates(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        """Each metric on each resample ([resamples] arrays; NaN where a resample has one class only)."""
        scores = self._check(scores)
        return {"auc": self._auc(scores), "gauc": self._gauc(scores), "logloss": self._log_loss(scores)}

    def intervals(self, scores: np.ndarray) -> dict[str, Interval]:
        """Per metric: the value on all rows and its bootstrap interval."""
        points = _points(self.users, self.labels, self._check(scores))
        return {m: self._interval(points[m], values) for m, values in self.replicates(scores).items()}

    def difference(self, scores_a: np.ndarray, scores_b: np.ndarray) -> dict[str, Interval]:
        """Per metric: model A's value minus model B's, and the interval of that difference over the
        same resamples (paired, so it is narrower than the two models' own intervals suggest)."""
        a, b = _points(self.users, self.labels, self._check(scores_a)), _points(self.users, self.labels, self._check(scores_b))
        ra, rb = self.replicates(scores_a), self.replicates(scores_b)
        return {m: self._interval(a[m] - b[m], ra[m] - rb[m]) for m in METRICS}

    def _check(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != self.labels.shape:
            raise ValueError(f"scores of shape {scores.shape} for {self.labels.shape} labelled rows")
        return scores

    def _interval(self, point: float, values: np.ndarray) -> Interval:
        return percentile_interval(point, values, self.level)

    def _weighted_mean(self, per_user: np.ndarray, rows_per_user: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.counts @ per_user) / (self.counts @ rows_per_user)

    def _log_loss(self, scores: np.ndarray) -> np.ndarray:
        p = np.clip(scores, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
        loss = -np.where(self.positive, np.log(p), np.log1p(-p))
        return self._weighted_mean(np.bincount(self.user_index, weights=loss, minlength=len(self.user_rows)), self.user_rows)

    def _gauc(self, scores: np.ndarray) -> np.ndarray:
        auc, n = group_aucs(self.user_index, self.labels, scores)
        valid = ~np.isnan(auc)
        n = np.where(valid, n, 0).astype(np.float64)
        return self._weighted_mean(np.where(valid, auc, 0.0) * n, n)

    def _auc(self, scores: np.ndarray) -> np.ndarray:
        if len(scores) == 0:
            return np.full(self.resamples, np.nan)
        order = np.argsort(scores, kind="stable")
        s, positive, user = scores[order], self.positive[order], self.user_index[order]
        tie_start = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        out = np.empty(self.resamples)
        step = max(1, _CHUNK_CELLS // max(len(s), 1))
        for lo in range(0, self.resamples, step):
            weight = self.counts[lo : lo + step][:, user].astype(np.float64)
            pos = np.add.reduceat(np.where(positive, weight, 0.0), tie_start, axis=1)
            neg = np.add.reduceat(np.where(positive, 0.0, weight), tie_start, axis=1)
            # a positive beats every negative in a lower tie group and half-beats those in its own
            below = np.cumsum(neg, axis=1) - neg
            wins = np.sum(pos * (below + 0.5 * neg), axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[lo : lo + step] = wins / (pos.sum(axis=1) * neg.sum(axis=1))
        return np.where(np.isfinite(out), out, np.nan)


def percentile_interval(point: float, values: np.ndarray, level: float) -> Interval:
    """`point` with the percentile interval of the resampled `values` (NaNs left out)."""
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return Interval(point, float("nan"), float("nan"))
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return Interval(point, float(low), float(high))


def mean_interval(values: np.ndarray, resamples: int = 200, seed: int = 0, level: float = 0.95) -> Interval:
    """The mean of per-user values (NaNs left out) with its percentile bootstrap interval from
    resampling users: the ratio of means over a denominator of ones."""
    values = np.asarray(values, np.float64)
    return ratio_of_means(values, np.ones_like(values), resamples, seed, level)


def ratio_of_means(a: np.ndarray, b: np.ndarray, resamples: int = 200, seed: int = 0, level: float = 0.95) -> Interval:
    """mean(a) / mean(b) over paired per-user values (users with a NaN in either left out), with the
    percentile bootstrap interval from resampling users; NaN where mean(b) is 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired per-user values must be 1-d of one length, got {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if not len(a) or b.sum() == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    draws = np.random.default_rng(seed).integers(0, len(a), (resamples, len(a)))
    with np.errstate(divide="ignore", invalid="ignore"):
        values = a[draws].sum(axis=1) / b[draws].sum(axis=1)
    return percentile_interval(float(a.sum() / b.sum()), np.where(np.isfinite(values), values, np.nan), level)
