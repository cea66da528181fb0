"""Cap how many items of one category the list may hold."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.rerank.base import RerankInput, kept_in_order
from cascade.rerank.params import require_int_at_least


def rank_within_category(categories: np.ndarray) -> np.ndarray:
    """int64 [n]: how many earlier items share each item's category (0 for the first of each)."""
    by_category = np.argsort(categories, kind="stable")  # ties keep input order
    sorted_categories = categories[by_category]
    starts = np.flatnonzero(np.r_[True, sorted_categories[1:] != sorted_categories[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(categories)]))
    rank = np.empty(len(categories), dtype=np.int64)
    rank[by_category] = np.arange(len(categories)) - group_start
    return rank


@dataclass(frozen=True)
class CapPerCategory:
    """Keep at most `limit` items of any one category: the first ones in the current ranking.

    The input order is the ranking so far (the ranker's score order, or a previous operator's);
    later items of a full category are dropped, so this may return fewer than k.
    """

    limit: int

    def __post_init__(self) -> None:
        require_int_at_least(self, "limit", self.limit, 1)

    def __call__(self, batch: RerankInput, k: int) -> np.ndarray:
        if len(batch) == 0:
            return np.empty(0, dtype=np.int64)
        return kept_in_order(rank_within_category(batch.categories) < self.limit, k)
