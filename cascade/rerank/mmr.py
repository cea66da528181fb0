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
from cascade.rerank.params import require_in_range
from cascade.rerank.similarity import minmax, similarity_to


@dataclass(frozen=True)
class DiversifyByMMR:
    lam: float = 0.7  # 1: pure score order; 0: pure diversity
    category_weight: float = 0.5  # share of category equality in the similarity, the rest cosine

    def __post_init__(self) -> None:
        require_in_range(self, "lam", self.lam, 0.0, 1.0)
        require_in_range(self, "category_weight", self.category_weight, 0.0, 1.0)

    def __call__(self, batch: RerankInput, k: int) -> np.ndarray:
        n = min(k, len(batch))
        if n <= 0:
            return np.empty(0, dtype=np.int64)
        relevance = self.lam * minmax(batch.scores)
        unit = batch.unit()
        max_sim = np.zeros(len(batch))
        picked = np.empty(n, dtype=np.int64)
        picked[0] = batch.scores.argmax()
        for step in range(1, n):
            similarity = similarity_to(batch.categories, unit, picked[step - 1], self.category_weight)
            np.maximum(max_sim, similarity, out=max_sim)
            gain = relevance - (1.0 - self.lam) * max_sim
            gain[picked[:step]] = -np.inf
            picked[step] = gain.argmax()
        return picked
