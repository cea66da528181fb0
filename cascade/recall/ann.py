"""The ANN recall channel: user tower (ONNX Runtime, in process) -> FAISS inner-product search.

The FAISS index moves to the GPU when faiss was built with CUDA and a device is visible;
faiss-cpu (and any machine without a GPU) keeps it on the CPU.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cascade.features import FeatureTables, assemble_users
from cascade.specs import USER_EMBEDDING, USER_TOWER_FEATURES


def single_threaded_faiss() -> None:
    """One query at a time: OpenMP threads only add wake-up latency (measured 0.6 ms -> ~9 ms in the
    server next to Triton's processes on 2 cores). OpenMP keeps this setting per thread, so every
    thread that searches must call it (the recall thread pool's initializer does; without it an ANN
    search on a pool thread took 1.4 ms instead of 0.4)."""
    import faiss

    faiss.omp_set_num_threads(1)


def load_index(path: Path, use_gpu: bool = True, nprobe: int | None = None):  # -> faiss.Index
    """The index file, with `nprobe` lists probed per query where it is an IVF index."""
    import faiss

    single_threaded_faiss()
    index = faiss.read_index(str(path))
    if nprobe is not None and hasattr(index, "nprobe"):
        index.nprobe = nprobe  # copied along to a GPU index
    if use_gpu and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        resources = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(resources, 0, index)
        index.referenced_resources = resources  # keep the resources alive with the index
    return index


class AnnRecall:
    def __init__(self, tables: FeatureTables, user_tower_path: Path, index) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.tables = tables
        self.session = ort.InferenceSession(str(user_tower_path), options, providers=["CPUExecutionProvider"])
        self.index = index

    def user_embedding(self, user_id: int, history: np.ndarray, timestamp: int) -> np.ndarray:
        f = assemble_users(self.tables, np.array([user_id]), history[None, :], np.array([timestamp]))
        return self.session.run([USER_EMBEDDING], {n: f[n] for n in USER_TOWER_FEATURES})[0]

    def search(self, user_id: int, history: np.ndarray, timestamp: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item ids and inner-product scores for one user (history padded to L)."""
        scores, ids = self.index.search(self.user_embedding(user_id, history, timestamp), min(k, self.index.ntotal))
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)
