"""Exact top-k by inner product in torch, the items resident on a CUDA device: the recall index where
torch sees a GPU but faiss has no GPU build (`cascade.recall.ann.load_index`). The same code runs
with `device="cpu"`, where it is unit-tested; on a CPU-only machine serving keeps numpy's
`cascade.recall.exact.ExactInnerProduct`.

It answers as `ExactInnerProduct` does: faiss's `search` and `ntotal`, -inf and -1 past `ntotal`,
best first with ties by lower id, and a query's answer the same bits in any batch
(`cascade.recall.ann.AnnRecall.search_many` relies on it):

- Scores. A matrix product's kernel (cuBLAS, MKL) is chosen by its shape, and kernels round
  differently: a query scored in a batch of 5 and alone can differ in the last bit. Queries are
  therefore scored in blocks of exactly `QUERY_BLOCK` rows, the last one padded with zeros, so every
  batch runs one product shape; a row's bits do not depend on its place in the block.
- Selection. `torch.topk` returns the k largest values, but which of several equal values at the
  cut it keeps, and in what order it returns equal values, is unspecified (and differs between CPU
  and CUDA). The k it finds are re-sorted by (-score, id), and a row where more than k items reach
  the k-th score (a tie across the cut: duplicate items, zero vectors) is redone on the host by
  `cascade.recall.exact.top_k`, which keeps the lower ids. Exact ties are rare in real embeddings,
  so the extra cost is one comparison pass over the scores.

Thread safety: the recall pool calls `search` from several threads at once. On CUDA each thread
issues its work on its own stream (one per thread and index), so searches overlap on the device and
a thread's copy back waits for its own kernels only; the item matrix is read only, and uploaded
and synchronised before any search. On the CPU torch's operators need nothing more.
"""
from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

import numpy as np
import torch

from cascade.recall.exact import top_k

if TYPE_CHECKING:
    import faiss  # only `of` reads a faiss index: a GPU machine without faiss still searches by torch

QUERY_BLOCK = 16  # the ANN batcher's largest batch (orchestrator.ann_batcher.MAX_BATCH) is one block


class TorchExactInnerProduct:
    """A flat inner-product index with faiss's `search` and `ntotal`; the items float32 on `device`."""

    def __init__(self, vectors: np.ndarray, device: str | torch.device = "cuda") -> None:
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be [n, d], got shape {vectors.shape}")
        self.device = torch.device(device)
        self.vectors = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(self.device)
        self.ntotal, self.d = self.vectors.shape
        self._streams = threading.local()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # uploaded on the default stream; searches run on others

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 [n, k], ids int64 [n, k]), best first; past `ntotal`, -inf and -1 as faiss pads."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.d)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        found = min(k, self.ntotal)
        if len(queries) and found > 0:
            with self._stream():
                scores[:, :found], ids[:, :found] = self._best(queries, found)
        return scores, ids

    def _best(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best (scores, ids) of each query (k <= ntotal) as host arrays, best first, ties by lower id."""
        n = len(queries)
        padded = np.zeros((-(-n // QUERY_BLOCK) * QUERY_BLOCK, self.d), np.float32)
        padded[:n] = queries
        blocks = torch.from_numpy(padded).to(self.device)
        scores = torch.empty((len(padded), self.ntotal), dtype=torch.float32, device=self.device)
        for lo in range(0, len(padded), QUERY_BLOCK):  # one product shape whatever the batch
            torch.mm(blocks[lo : lo + QUERY_BLOCK], self.vectors.T, out=scores[lo : lo + QUERY_BLOCK])
        scores = scores[:n]
        best, ids = torch.topk(scores, k, dim=1, sorted=False)
        ids, order = ids.sort(dim=1)
        best, order = best.gather(1, order).sort(dim=1, descending=True, stable=True)  # ids ascend: ties by id
        ids = ids.gather(1, order)
        reaching = (scores >= best[:, -1:]).sum(dim=1)  # k unless a tie crosses the cut
        best_host, ids_host, reaching_host = best.cpu().numpy(), ids.cpu().numpy(), reaching.cpu().numpy()
        for row in np.flatnonzero(reaching_host > k):
            ids_host[row], best_host[row] = top_k(scores[row].cpu().numpy(), k)
        return best_host, ids_host

    def _stream(self) -> contextlib.AbstractContextManager:
        """This thread's own CUDA stream for this index; nothing on the CPU."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        stream = getattr(self._streams, "stream", None)
        if stream is None:
            stream = self._streams.stream = torch.cuda.Stream(self.device)
        return torch.cuda.stream(stream)

    @staticmethod
    def of(index: faiss.Index, device: str | torch.device = "cuda") -> TorchExactInnerProduct:
        """Exact search over the vectors of any inner-product faiss index: flat, IVF (read back from
        its inverted lists, no direct map needed) or HNSW (its flat storage). Row i is id i, as the
        export adds them (`export.faiss_index.build_index`); IVF and HNSW thus answer exactly here."""
        import faiss

        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(f"an inner-product index is needed, got faiss metric {index.metric_type}")
        return TorchExactInnerProduct(index.reconstruct_n(0, index.ntotal), device)
