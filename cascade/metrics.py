"""Offline metrics over numpy arrays: AUC, GAUC, log loss, Recall@K, NDCG@K and Kendall's tau-b."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LOG_LOSS_EPS = 1e-7  # log_loss clips probabilities to [eps, 1 - eps]


def group_aucs(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-group AUC (rank-sum formula, ties sharing their average rank) and each group's row count.

    Groups are numbered 0..G-1 in ascending order of their id; a group with one class gets NaN.
    """
    groups, scores = np.asarray(groups), np.asarray(scores, dtype=np.float64)
    positive = np.asarray(labels) > 0.5
    if len(groups) == 0:
        return np.empty(0), np.empty(0, np.int64)
    order = np.lexsort((scores, groups))
    g, s, y = groups[order], scores[order], positive[order]
    new_group = np.r_[True, g[1:] != g[:-1]]
    new_tie = new_group | np.r_[True, s[1:] != s[:-1]]
    group_index = np.cumsum(new_group) - 1
    tie_index = np.cumsum(new_tie) - 1
    tie_start = np.flatnonzero(new_tie)
    tie_end = np.r_[tie_start[1:], len(s)]
    # 1-based rank within the group, a tie sharing the mean of the ranks it spans
    rank = ((tie_start + tie_end + 1) / 2.0)[tie_index] - np.flatnonzero(new_group)[group_index]
    n = np.bincount(group_index)
    n_pos = np.bincount(group_index, weights=y)
    n_neg = n - n_pos
    rank_sum = np.bincount(group_index, weights=np.where(y, rank, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan), n


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula, ties sharing their average rank (NaN with one class)."""
    auc, _ = group_aucs(np.zeros(len(labels), np.int64), labels, scores)
    return float(auc[0]) if len(auc) else float("nan")


def gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Group AUC: each user's AUC weighted by the user's number of impressions.

    Users whose impressions are all positive or all negative are skipped; NaN when none is left.
    """
    auc, n = group_aucs(users, labels, scores)
    valid = ~np.isnan(auc)
    if not valid.any():
        return float("nan")
    return float(np.sum(auc[valid] * n[valid]) / np.sum(n[valid]))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = LOG_LOSS_EPS) -> float:
    """Mean binary cross-entropy of probabilities (clipped to [eps, 1 - eps]) against 0/1 labels."""
    y = (np.asarray(labels) > 0.5).astype(np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    if len(y) == 0:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def recall_per_user(retrieved: Sequence[np.ndarray], relevant: list[set[int]], k: int) -> np.ndarray:
    """Each user's |top-k ∩ relevant| / |relevant| (NaN for a user with no relevant item)."""
    return np.array([len(set(np.asarray(r)[:k].tolist()) & rel) / len(rel) if rel else np.nan
                     for r, rel in zip(retrieved, relevant)], np.float64)


def recall_at_k(retrieved: Sequence[np.ndarray], relevant: list[set[int]], k: int) -> float:
    """Mean over users of |top-k ∩ relevant| / |relevant| (users with no relevant item skipped)."""
    hits = recall_per_user(retrieved, relevant, k)
    hits = hits[~np.isnan(hits)]
    return float(np.mean(hits)) if len(hits) else float("nan")


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(k) + 2.0)


def ndcg_at_k(ranked_item_ids_per_user: Sequence[np.ndarray], relevant_sets: list[set[int]], k: int) -> float:
    """Mean NDCG@k with binary relevance; the ideal DCG puts min(|relevant|, k) hits on top.

    Lists may be ragged (shorter than k); users with no relevant item are skipped (NaN if none is left).
    """
    discount = _discounts(k)
    values = []
    for ranked, rel in zip(ranked_item_ids_per_user, relevant_sets):
        if not rel:
            continue
        top = np.asarray(ranked)[:k]
        gains = np.fromiter((item in rel for item in top.tolist()), dtype=np.float64, count=len(top))
        values.append(float(gains @ discount[: len(top)]) / float(discount[: min(len(rel), k)].sum()))
    return float(np.mean(values)) if values else float("nan")


def _tied_pairs(x: np.ndarray) -> int:
    _, counts = np.unique(x, return_counts=True)
    return int(np.sum(counts * (counts - 1) // 2))


def kendall_tau(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> float:
    """Kendall's tau-b between two score vectors (ties in either handled); NaN if either is constant.

    O(n^2) pair comparisons, in row chunks so memory stays O(chunk * n); meant for n up to a few thousand.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"kendall_tau needs two 1-d arrays of one length, got {a.shape} and {b.shape}")
    n = len(a)
    pairs = n * (n - 1) // 2
    # sum over ordered pairs (i, j), i != j, of sign(a_i - a_j) * sign(b_i - b_j) = 2 * (concordant - discordant)
    both = 0.0
    for lo in range(0, n, chunk):
        both += float(np.sum(np.sign(a[lo : lo + chunk, None] - a[None, :]) * np.sign(b[lo : lo + chunk, None] - b[None, :])))
    denominator = np.sqrt(float(pairs - _tied_pairs(a)) * float(pairs - _tied_pairs(b)))
    return float(both / 2.0 / denominator) if denominator > 0 else float("nan")
