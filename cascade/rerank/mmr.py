"""Diversify by greedy Maximal Marginal Relevance (Carbonell & Goldstein, 1998).

Each step picks the item with the best trade-off between its own relevance and its similarity to
the closest item already picked: lam * rel - (1 - lam) * max_sim. Similarity mixes "same category"
with the cosine of the item embeddings. Keeping a running max over the picked items makes it
O(k * n * d) without ever forming the n x n similarity matrix.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.rerank.base import RerankInput


def _minmax(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; all zeros when every value is the same."""
    x = x.astype(np.float64)
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero, so their cosine to anything is 0."""
    x = x.astype(np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


@dataclass(frozen=True)
class DiversifyByMMR:
    lam: float = 0.7  # 1: pure score order; 0: pure diversity
    category_weight: float = 0.5  # share of category equality in the similarity, the rest cosine

    def __post_init__(self) -> None:
        for field, value in (("lam", self.lam), ("category_weight", self.category_weight)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{field} must lie in [0, 1], got {value}")

    def _similarity_to(self, batch: RerankInput, unit: np.ndarray | None, j: int) -> np.ndarray:
        """float64 [n]: similarity of every item to item j."""
        same_category = (batch.categories == batch.categories[j]).astype(np.float64)
        if unit is None:
            return same_category
        w = self.category_weight
        return w * same_category + (1.0 - w) * (unit @ unit[j])

    def __call__(self, batch: RerankInput, k: int) -> np.ndarray:
        n = min(k, len(batch))
        if n <= 0:
            return np.empty(0, dtype=np.int64)
        relevance = self.lam * _minmax(batch.scores)
        unit = None if batch.embeddings is None else _unit_rows(batch.embeddings)
        max_sim = np.zeros(len(batch))
        picked = np.empty(n, dtype=np.int64)
        picked[0] = np.argmax(batch.scores)
        for step in range(1, n):
            max_sim = np.maximum(max_sim, self._similarity_to(batch, unit, picked[step - 1]))
            gain = relevance - (1.0 - self.lam) * max_sim
            gain[picked[:step]] = -np.inf
            picked[step] = np.argmax(gain)
        return picked
