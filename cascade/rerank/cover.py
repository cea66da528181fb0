"""Cover categories: rank order, except where the first positions would hold too few categories."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.rerank.base import RerankInput
from cascade.rerank.params import require_int_at_least


@dataclass(frozen=True)
class CoverCategories:
    """Keep the input order (the ranking), but make the first `within` positions hold at least
    `min_categories` categories, or as many as the input holds.

    Greedy, position by position: a position takes the best-ranked remaining item, unless the
    positions left in the first `within` are only just enough for the categories still missing;
    then it takes the best-ranked remaining item of a category not yet placed. So the items that
    bring the missing categories sit at the end of the first `within`, where the ranking loses
    least, and a list that already holds enough categories keeps its order untouched. Why beside
    MMR and DPP: they trade score for diversity at every position of every list, while this pays
    only in the lists that lack categories and only in their last positions (on the synthetic
    export it met the four-category rule at a fraction of MMR's NDCG cost; `export.choose_rerank`).
    The order does not depend on k, so asked for k it returns the first k of its full order.
    Returns min(k, n) items; O(within * n).
    """

    min_categories: int = 4
    within: int = 10

    def __post_init__(self) -> None:
        require_int_at_least(self, "min_categories", self.min_categories, 1)
        require_int_at_least(self, "within", self.within, 1)

    def __call__(self, batch: RerankInput, k: int) -> np.ndarray:
        size = max(0, min(k, len(batch)))
        if size == 0:
            return np.empty(0, dtype=np.int64)
        codes = batch.category_codes()
        covered = np.zeros(codes.max() + 1, dtype=bool)
        remaining = np.ones(len(batch), dtype=bool)
        placed = np.empty(size, dtype=np.int64)
        n_covered = 0
        for position in range(size):
            pick = int(np.argmax(remaining))
            if position < self.within and n_covered < self.min_categories:  # the floor not met yet
                new = remaining & ~covered[codes]
                available = np.count_nonzero(np.bincount(codes[new], minlength=len(covered)))
                if min(self.min_categories - n_covered, available) >= self.within - position:
                    pick = int(np.argmax(new))
            placed[position] = pick
            remaining[pick] = False
            n_covered += not covered[codes[pick]]
            covered[codes[pick]] = True
        return placed
