"""Item-tower embeddings for the whole catalogue, and the FAISS index recall searches."""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import torch

from cascade.features import FeatureTables, assemble_items
from cascade.models.two_tower import TwoTower

HNSW_ABOVE = 200_000  # exact inner-product search is fast enough below this catalogue size


@torch.no_grad()
def item_embeddings(model: TwoTower, tables: FeatureTables, batch: int = 8192) -> np.ndarray:
    model.eval()
    out = []
    for lo in range(0, tables.n_items, batch):
        f = assemble_items(tables, np.arange(lo, min(lo + batch, tables.n_items)))
        out.append(model.item_tower(*(torch.from_numpy(f[n]) for n in ("item_id", "item_cat", "item_num"))).numpy())
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def build_index(embeddings: np.ndarray) -> faiss.Index:
    """Flat inner product for small catalogues, HNSW beyond HNSW_ABOVE items; ids are item ids."""
    dim = embeddings.shape[1]
    index = faiss.IndexFlatIP(dim) if len(embeddings) <= HNSW_ABOVE else faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    index.add(embeddings)
    return index


def write_index(index: faiss.Index, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(path))
