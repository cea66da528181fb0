"""Item-tower embeddings for the whole catalogue, and the FAISS index recall searches."""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import torch

from cascade.features import FeatureTables, assemble_items
from cascade.models.two_tower import TwoTower
from cascade.specs import ITEM_SIDE

IVF_FROM = 50_000  # exact inner-product search is fast enough below this catalogue size
HNSW_ABOVE = 1_000_000  # IVF between the two; HNSW (no training, flat latency in n) above


@torch.no_grad()
def item_embeddings(model: TwoTower, tables: FeatureTables, batch: int = 8192) -> np.ndarray:
    model.eval()
    out = []
    for lo in range(0, tables.n_items, batch):
        f = assemble_items(tables, np.arange(lo, min(lo + batch, tables.n_items)))
        out.append(model.item_tower(*(torch.from_numpy(f[n]) for n in ITEM_SIDE)).numpy())
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def index_kind(n_items: int) -> str:
    return "flat" if n_items < IVF_FROM else "ivf" if n_items <= HNSW_ABOVE else "hnsw"


def ivf_lists(n_items: int) -> int:
    """nlist ~ 4 sqrt(n), and at least 39 training points per list (FAISS's own minimum)."""
    return max(1, min(int(4 * np.sqrt(n_items)), n_items // 39))


def build_index(embeddings: np.ndarray, kind: str | None = None, seed: int = 7) -> faiss.Index:
    """Inner-product index whose ids are item ids: Flat below IVF_FROM items, IVF up to HNSW_ABOVE, HNSW beyond.

    `kind` forces one ("flat", "ivf", "hnsw"); the orchestrator sets an IVF index's nprobe.
    """
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, dim = embeddings.shape
    kind = kind or index_kind(n)
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, ivf_lists(n), faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(embeddings)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    else:
        raise ValueError(f"unknown index kind {kind!r}; one of flat, ivf, hnsw")
    index.add(embeddings)
    return index


def write_index(index: faiss.Index, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(path))
