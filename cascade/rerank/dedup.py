"""Drop repeated item ids (recall sources can return the same item twice)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.rerank.base import RerankInput, kept_in_order


@dataclass(frozen=True)
class DropDuplicateItems:
    """Keep the first occurrence of each item id, in input order; may return fewer than k."""

    def __call__(self, batch: RerankInput, k: int) -> np.ndarray:
        keep = np.zeros(len(batch), dtype=bool)
        _, first = np.unique(batch.item_ids, return_index=True)
        keep[first] = True
        return kept_in_order(keep, k)
