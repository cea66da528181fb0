"""Scatter categories: spread items of one category so they do not sit next to each other."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.rerank.base import RerankInput
from cascade.rerank.params import require_int_at_least


@dataclass(frozen=True)
class ScatterCategories:
    """Reorder so that no category appears twice within any `window` consecutive positions.

    Greedy: each position takes the best-ranked remaining item (input order is the ranking) whose
    category is not among the last `window - 1` placed. Where no remaining item qualifies, it
    falls back to the best-ranked remaining item, so a repeat is allowed rather than an item lost.
    Greedy is best effort: it can fall back on some inputs that do have a valid arrangement.
    Items of one category keep their relative order. `window` 1 keeps the input order.
    Returns min(k, n) items; O(k * n).
    """

    window: int

    def __post_init__(self) -> None:
        require_int_at_least(self, "window", self.window, 1)

    def __call__(self, batch: RerankInput, k: int) -> np.ndarray:
        size = max(0, min(k, len(batch)))
        if size == 0:
            return np.empty(0, dtype=np.int64)
        codes = batch.category_codes()
        last_placed = np.full(codes.max() + 1, -self.window, dtype=np.int64)  # position, per category
        remaining = np.ones(len(batch), dtype=bool)
        placed = np.empty(size, dtype=np.int64)
        for position in range(size):
            allowed = remaining & (last_placed[codes] <= position - self.window)
            placed[position] = np.argmax(allowed if allowed.any() else remaining)
            remaining[placed[position]] = False
            last_placed[codes[placed[position]]] = position
        return placed
