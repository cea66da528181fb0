"""Relevance scaling and item-to-item similarity, shared by the diversifiers (MMR, DPP).

Similarity of items i and j: w * [same category] + (1 - w) * cosine(embedding_i, embedding_j), or
[same category] alone where the caller has no embeddings. Both terms are Gram matrices, so the
similarity matrix is positive semi-definite, which DPP relies on.
"""
from __future__ import annotations

import numpy as np


def minmax(x: np.ndarray) -> np.ndarray:
    """float64, scaled to [0, 1]; all zeros when every value is the same."""
    x = x.astype(np.float64)
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def unit_rows(x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Rows scaled to unit length, in `dtype`; zero rows stay zero, so their cosine to anything is 0."""
    x = np.asarray(x, dtype=dtype)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def similarity_to(
    categories: np.ndarray, unit: np.ndarray | None, j: int, category_weight: float
) -> np.ndarray:
    """float64 [n]: similarity of every item to item j; `unit` holds unit_rows(embeddings) or None."""
    same_category = categories == categories[j]
    if unit is None:
        return same_category.astype(np.float64)
    return category_weight * same_category + (1.0 - category_weight) * (unit @ unit[j])
