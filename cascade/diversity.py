"""How diverse recommended lists are: categories in a list, the largest category's share, intra-list
diversity, and category coverage over users. Pure numpy; the funnel evaluation reports them beside
NDCG (`export.eval_funnel`), and the rerank chain is chosen on them (`export.choose_rerank`).

A list is given by its items' categories (int [k]) or their unit-length embeddings (float [k, d], as
`cascade.rerank.similarity.unit_rows` makes them: zero rows stay zero).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def distinct_categories(categories: np.ndarray) -> int:
    """How many categories the list holds."""
    return int(len(np.unique(categories)))


def largest_category_share(categories: np.ndarray) -> float:
    """The share of the list held by its most frequent category (NaN for an empty list)."""
    if not len(categories):
        return float("nan")
    return float(np.unique(categories, return_counts=True)[1].max() / len(categories))


def intra_list_diversity(unit_embeddings: np.ndarray) -> float:
    """Mean over the list's pairs of items of 1 - cosine (rows already unit length); NaN below two items."""
    n = len(unit_embeddings)
    if n < 2:
        return float("nan")
    cosine = unit_embeddings @ unit_embeddings.T
    upper = np.triu_indices(n, k=1)
    return float(np.mean(1.0 - cosine[upper]))


def category_coverage(lists: Sequence[np.ndarray], n_categories: int) -> float:
    """The share of the catalogue's `n_categories` categories found in at least one of the lists."""
    if n_categories <= 0:
        return float("nan")
    shown = np.unique(np.concatenate([np.asarray(c, np.int64) for c in lists])) if lists else np.empty(0, np.int64)
    return float(len(shown) / n_categories)


def share_reaching(distinct: np.ndarray, available: np.ndarray, least: int) -> float:
    """Of the lists whose candidates held at least `least` categories (`available`, per list), the share
    that hold at least `least` themselves (`distinct`); NaN where no list's candidates allowed it."""
    allowed = np.asarray(available) >= least
    if not allowed.any():
        return float("nan")
    return float(np.mean(np.asarray(distinct)[allowed] >= least))
