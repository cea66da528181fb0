"""Exact top-k by inner product over a flat matrix on the CPU: what a faiss `IndexFlatIP` answers,
for less CPU at this project's large k.

FAISS's flat search keeps a k-heap per query; at k = 1,000 of 20,000 items the heap is most of its
0.32 ms a query. Here a query costs one matrix-vector product, a threshold taken from a strided
sample of the scores (chosen so that some 1.3 k items pass it), the items at or above it, and one
stable sort of those: ~0.2 ms. When fewer than k items pass (an unlucky sample), the exact k-th
score, from a partition of all the scores, is the threshold instead; the answer is exact either way.

Each query is its own matrix-vector product, so a query's scores are the same bits in any batch
(`cascade.recall.ann.AnnRecall.search_many` relies on it). The product runs on numpy's BLAS: run
the process with `OPENBLAS_NUM_THREADS=1` (the stack does), or OpenBLAS spreads each product over
threads that spin for more CPU than the product itself.
"""
from __future__ import annotations

import numpy as np

SAMPLE_STRIDE = 8
SAMPLE_MARGIN = 1.3  # the sample's threshold lets ~1.3 k items through


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (ids int64, scores float32) of a score vector, best first, ties by lower id."""
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    sample = scores[::SAMPLE_STRIDE]
    rank = min(len(sample), int(k / SAMPLE_STRIDE * SAMPLE_MARGIN) + 1)  # 1 = the sample's best
    threshold = np.partition(sample, len(sample) - rank)[len(sample) - rank]
    ids = np.flatnonzero(scores >= threshold)
    if len(ids) < k:  # the sample's threshold was too high: the exact k-th score
        ids = np.flatnonzero(scores >= np.partition(scores, n - k)[n - k])
    best = ids[np.argsort(-scores[ids], kind="stable")[:k]]  # ids ascend, so a stable sort breaks ties by id
    return best.astype(np.int64), scores[best].astype(np.float32)


class ExactInnerProduct:
    """A flat inner-product index with faiss's `search` and `ntotal`, searched by `top_k`."""

    def __init__(self, vectors: np.ndarray) -> None:
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be [n, d], got shape {vectors.shape}")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.ntotal, self.d = self.vectors.shape

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 [n, k], ids int64 [n, k]), best first; past `ntotal`, -inf and -1 as faiss pads."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.d)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for row, query in enumerate(queries):
            best, best_scores = top_k(self.vectors @ query, k)
            ids[row, : len(best)], scores[row, : len(best)] = best, best_scores
        return scores, ids

    @staticmethod
    def of(index) -> "ExactInnerProduct | None":  # index: faiss.Index
        """The same search over a CPU `IndexFlatIP`'s vectors; None for any other index (IVF, GPU, L2)."""
        import faiss

        if type(index) is not faiss.IndexFlatIP:
            return None
        return ExactInnerProduct(index.reconstruct_n(0, index.ntotal))
