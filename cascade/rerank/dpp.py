"""Diversify by greedy MAP inference for a determinantal point process.

Chen, Zhang & Zhou, "Fast Greedy MAP Inference for Determinantal Point Process to Improve
Recommendation Diversity" (NeurIPS 2018), Algorithm 1, with the paper's relevance/diversity
trade-off kernel:

    L = diag(q) S diag(q),  q_i = exp(alpha * r_i),  alpha = theta / (2 * (1 - theta))

so that log det L_Y = theta / (1 - theta) * sum_{i in Y} r_i + log det S_Y: theta near 1 follows
the scores, theta near 0 favours diversity. r is the min-max normalised score in [0, 1]; q is
computed as exp(alpha * (r - 1)), the same kernel scaled by a constant, so it cannot overflow.
S = w * [same category] + (1 - w) * cosine(embeddings) with self-similarity 1, plus `JITTER` on
the diagonal so S is positive definite; without embeddings S is [same category] + JITTER * I.

Each step adds the item j with the largest d_j^2 = det L_{Y+j} / det L_Y, then updates every
other item's incremental Cholesky row c_i and d_i^2 in O(n * (|Y| + dim)); never forming L.
Picking stops at k items, or once the best d_j^2 falls below `MIN_GAIN` (the rest are numerically
redundant or of vanishing quality); the remaining places are then filled in score order.
Where embeddings have a zero row, that item's cosine to others is 0 (S stays positive definite).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.rerank.base import RerankInput
from cascade.rerank.params import require_in_range
from cascade.rerank.similarity import minmax, similarity_to

JITTER = 1e-6  # added to the diagonal of S: keeps it positive definite for exact duplicates
MIN_GAIN = 1e-12  # stop picking once the best det ratio d_j^2 falls below this


@dataclass(frozen=True)
class DiversifyByDPP:
    theta: float = 0.7  # relevance weight in (0, 1): near 1 follows the scores, near 0 diversity
    category_weight: float = 0.5  # share of category equality in the similarity, the rest cosine

    def __post_init__(self) -> None:
        require_in_range(self, "theta", self.theta, 0.0, 1.0, open_interval=True)
        require_in_range(self, "category_weight", self.category_weight, 0.0, 1.0)

    def _greedy_map(self, batch: RerankInput, size: int) -> list[int]:
        """Chen et al.'s Algorithm 1: up to `size` picks, stopping early when the gain vanishes."""
        alpha = self.theta / (2.0 * (1.0 - self.theta))
        quality = np.exp(alpha * (minmax(batch.scores) - 1.0))
        unit = batch.unit()
        cholesky = np.zeros((size, len(batch)))  # row t: every item's t-th Cholesky entry
        gain = quality**2 * (1.0 + JITTER)  # d_i^2, starting at L_ii
        available = np.ones(len(batch), dtype=bool)
        picked: list[int] = []
        while len(picked) < size:
            candidates = np.where(available, gain, -np.inf)
            j = int(np.argmax(candidates))
            if not candidates[j] >= MIN_GAIN:  # also stops on nan
                break
            picked.append(j)
            available[j] = False
            t = len(picked) - 1
            similarity = similarity_to(batch.categories, unit, j, self.category_weight)
            similarity[j] = 1.0 + JITTER
            kernel_row = quality[j] * quality * similarity
            e = (kernel_row - cholesky[:t, j] @ cholesky[:t]) / np.sqrt(gain[j])
            cholesky[t] = e
            gain = gain - e**2
        return picked

    def __call__(self, batch: RerankInput, k: int) -> np.ndarray:
        size = max(0, min(k, len(batch)))
        if size == 0:
            return np.empty(0, dtype=np.int64)
        picked = self._greedy_map(batch, size)
        by_score = np.argsort(-batch.scores, kind="stable")
        rest = by_score[~np.isin(by_score, picked)]
        return np.concatenate([np.array(picked, dtype=np.int64), rest[: size - len(picked)]]).astype(np.int64)
