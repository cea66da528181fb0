"""The ANN recall channel: user tower (ONNX Runtime, in process) -> inner-product search of the index.

Where the index is searched (`load_index`): on the GPU by faiss when faiss was built with CUDA and a
device is visible (flat and IVF; faiss has no GPU HNSW); else on the GPU by torch when torch sees
CUDA (`cascade.recall.gpu`, exact search over the index's vectors); else on the CPU, a flat index by
`cascade.recall.exact` (the same answers as faiss's k-heap for 0.2 instead of 0.32 ms a query at
k = 1,000) and IVF or HNSW ones by faiss.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from cascade.features import FeatureTables, assemble_users
from cascade.recall.exact import ExactInnerProduct
from cascade.specs import USER_EMBEDDING, USER_TOWER_FEATURES
from cascade.triton.sessions import cpu_session


def single_threaded_faiss() -> None:
    """One query at a time: OpenMP threads only add wake-up latency (measured 0.6 ms -> ~9 ms in the
    server next to Triton's processes on 2 cores). OpenMP keeps this setting per thread, so every
    thread that searches must call it (the recall thread pool's initializer does; without it an ANN
    search on a pool thread took 1.4 ms instead of 0.4)."""
    import faiss

    faiss.omp_set_num_threads(1)


def load_index(path: Path, use_gpu: bool = True, nprobe: int | None = None):  # -> faiss.Index | ExactInnerProduct | TorchExactInnerProduct
    """The index file, searched by the first of these that applies (with `use_gpu` False, the last):

    1. faiss on the GPU (faiss built with CUDA, a device visible), a flat or IVF index, IVF probing
       `nprobe` lists. faiss cannot move HNSW to the GPU: an HNSW index logs a warning and goes on
       down the list (the export should build IVF for a GPU).
    2. `cascade.recall.gpu.TorchExactInnerProduct` on CUDA (torch installed and seeing a device):
       exact search over the index's vectors whatever its kind, so IVF and HNSW answer exactly.
    3. The CPU: `ExactInnerProduct` for a flat inner-product index, faiss for IVF (`nprobe`) and HNSW.

    torch is imported for step 2 only: a process that passes use_gpu=False never loads it, and one
    without torch installed goes on to step 3.
    """
    import faiss

    single_threaded_faiss()
    index = faiss.read_index(str(path))
    if nprobe is not None and hasattr(index, "nprobe"):
        index.nprobe = nprobe  # copied along to a GPU index
    if use_gpu and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        if not isinstance(index, faiss.IndexHNSW):
            resources = faiss.StandardGpuResources()
            gpu_index = faiss.index_cpu_to_gpu(resources, 0, index)
            gpu_index.referenced_resources = resources  # keep the resources alive with the index
            return gpu_index
        logging.getLogger(__name__).warning(
            "%s is an HNSW index, which faiss cannot move to the GPU: it is searched exactly by torch on CUDA "
            "where torch sees the device, else by faiss on the CPU. Export an IVF index for GPU serving.", path,
        )
    if use_gpu and importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            from cascade.recall.gpu import TorchExactInnerProduct

            return TorchExactInnerProduct.of(index, "cuda")
    return ExactInnerProduct.of(index) or index  # a flat index on the CPU: the same answers, less CPU


class AnnRecall:
    def __init__(self, tables: FeatureTables, user_tower_path: Path, index) -> None:
        self.tables = tables
        self.session = cpu_session(user_tower_path, intra_op_threads=1)
        self.index = index

    def user_embeddings(self, user_ids: np.ndarray, histories: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
        """float32 [n, d]: the user tower over n users in one ONNX Runtime call (histories [n, L], padded).

        A lone user's row is run twice: ONNX Runtime computes a one-row matrix product by another
        kernel than a batch's rows, which rounds differently (~1e-7), and two rows keep a user's
        embedding the same bits in whatever batch it comes.
        """
        f = assemble_users(self.tables, user_ids, histories, timestamps)
        inputs = {n: np.repeat(f[n], 2, axis=0) if len(user_ids) == 1 else f[n] for n in USER_TOWER_FEATURES}
        return self.session.run([USER_EMBEDDING], inputs)[0][: len(user_ids)]

    def search_many(
        self, user_ids: np.ndarray, histories: np.ndarray, timestamps: np.ndarray, k: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top-k (item ids, inner-product scores) for each of n users (histories [n, L], padded).

        One user-tower call and one index search for all of them, and each user's answer is the one
        it gets alone: its embedding is the same bits in any batch (`user_embeddings`), and the
        index scores each query on its own: `ExactInnerProduct` one matrix-vector product a query,
        FAISS single-threaded (`single_threaded_faiss`) and at its default
        `faiss.cvar.distance_compute_blas_threshold` for a small batch. (A lower threshold sends
        batches to its BLAS path: cheaper per query, but a score then rounds differently with the
        batch size.)
        """
        queries = self.user_embeddings(user_ids, histories, timestamps)
        scores, ids = self.index.search(queries, min(k, self.index.ntotal))
        keep = ids >= 0
        return [(i[m].astype(np.int64), s[m].astype(np.float32)) for i, s, m in zip(ids, scores, keep)]
