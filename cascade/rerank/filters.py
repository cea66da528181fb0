"""Business filters: drop items that must not be shown, whatever their score."""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from cascade.rerank.base import RerankInput, kept_in_order


@dataclass(frozen=True)
class ExcludeCategories:
    """Drop every item whose category is listed; the rest keep their order. May return fewer than k.

    Configuration gives a JSON list; it is stored as a tuple so the operator stays hashable.
    An empty list excludes nothing.
    """

    categories: tuple[int, ...]

    def __post_init__(self) -> None:
        values = self.categories
        integers = isinstance(values, (list, tuple)) and all(
            isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in values
        )
        if not integers:
            raise ValueError(f"ExcludeCategories: categories must be a list of integers, got {values!r}")
        object.__setattr__(self, "categories", tuple(int(c) for c in values))

    def __call__(self, batch: RerankInput, k: int) -> np.ndarray:
        excluded = np.array(self.categories, dtype=np.int64)
        return kept_in_order(~np.isin(batch.categories, excluded), k)
