"""Index choice by catalogue size, and IVF's recall against exact search."""
from __future__ import annotations

import faiss
import numpy as np

from export.faiss_index import HNSW_ABOVE, IVF_FROM, build_index, index_kind, ivf_lists


def test_kind_by_catalogue_size() -> None:
    assert index_kind(IVF_FROM - 1) == "flat"
    assert index_kind(IVF_FROM) == "ivf"
    assert index_kind(HNSW_ABOVE) == "ivf"
    assert index_kind(HNSW_ABOVE + 1) == "hnsw"
    assert ivf_lists(1_000_000) == 4_000
    assert ivf_lists(100) == 2  # never fewer than 39 training points a list


def test_ivf_recall_at_10_against_flat() -> None:
    rng = np.random.default_rng(0)
    n, dim = 20_000, 32
    centres = rng.normal(size=(200, dim)).astype(np.float32)
    items = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
    queries = centres[rng.integers(0, len(centres), 200)] + 0.5 * rng.normal(size=(200, dim)).astype(np.float32)
    flat = build_index(items, kind="flat")
    ivf = build_index(items, kind="ivf")
    assert isinstance(ivf, faiss.IndexIVFFlat) and ivf.nlist == ivf_lists(n) and ivf.ntotal == n
    ivf.nprobe = 32  # the orchestrator's default (CASCADE_FAISS_NPROBE)
    _, exact = flat.search(queries, 10)
    _, approx = ivf.search(queries, 10)
    recall = np.mean([len(set(e) & set(a)) / 10 for e, a in zip(exact, approx)])
    assert recall >= 0.9, recall


def test_load_index_sets_nprobe_on_ivf_only(tmp_path) -> None:
    from cascade.recall.ann import load_index
    from export.faiss_index import write_index

    items = np.random.default_rng(1).normal(size=(2_000, 8)).astype(np.float32)
    write_index(build_index(items, kind="ivf"), tmp_path / "ivf.faiss")
    write_index(build_index(items, kind="flat"), tmp_path / "flat.faiss")
    assert load_index(tmp_path / "ivf.faiss", use_gpu=False, nprobe=7).nprobe == 7
    assert load_index(tmp_path / "flat.faiss", use_gpu=False, nprobe=7).ntotal == 2_000
