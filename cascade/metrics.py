"""Offline metrics over numpy arrays."""
from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula, ties sharing their average rank."""
    labels = np.asarray(labels) > 0.5
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    boundaries = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1], True])
    for lo, hi in zip(boundaries[:-1], boundaries[1:]):
        ranks[order[lo:hi]] = (lo + hi + 1) / 2.0
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def recall_at_k(retrieved: np.ndarray, relevant: list[set[int]], k: int) -> float:
    """Mean over users of |top-k ∩ relevant| / |relevant| (users with no relevant item skipped)."""
    hits = [len(set(r[:k].tolist()) & rel) / len(rel) for r, rel in zip(retrieved, relevant) if rel]
    return float(np.mean(hits)) if hits else float("nan")
