"""Exact top-k by inner product (`cascade.recall.exact`) against faiss's flat index and a full sort."""
from __future__ import annotations

import faiss
import numpy as np
import pytest

from cascade.recall import exact
from cascade.recall.exact import ExactInnerProduct, top_k


def _items(n: int = 5_000, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype(np.float32), rng.normal(size=(40, dim)).astype(np.float32)


def _sorted_best(scores: np.ndarray, k: int) -> np.ndarray:
    return np.lexsort((np.arange(len(scores)), -scores))[:k]


@pytest.mark.parametrize("k", [1, 10, 700, 5_000, 6_000])
def test_top_k_is_the_full_sorts_best_k_and_faiss_flats_set(k: int) -> None:
    vectors, queries = _items()
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    fscores, fids = flat.search(queries, min(k, len(vectors)))
    for query, faiss_ids, faiss_scores in zip(queries, fids, fscores):
        scores = vectors @ query
        ids, best = top_k(scores, k)
        assert ids.dtype == np.int64 and best.dtype == np.float32 and len(ids) == min(k, len(vectors))
        assert np.array_equal(ids, _sorted_best(scores, k)) and np.array_equal(best, scores[ids])
        assert set(ids.tolist()) == set(faiss_ids.tolist())  # no near-tie at the cut in random data
        np.testing.assert_allclose(best, faiss_scores, atol=1e-5)


def test_ties_go_to_the_lower_id_and_an_unlucky_sample_falls_back_to_the_exact_cut() -> None:
    scores = np.zeros(1_000, np.float32)
    scores[[3, 500, 998]] = 1.0  # the sample (every 8th) sees only 0s: its threshold lets everything through
    ids, best = top_k(scores, 5)
    assert ids.tolist() == [3, 500, 998, 0, 1] and best.tolist() == [1, 1, 1, 0, 0]
    worst_case = np.zeros(1_000, np.float32)
    worst_case[::8] = 1.0  # the sampled scores are the best ones: too few pass the sample's threshold
    ids, _ = top_k(worst_case, 200)
    assert ids.tolist() == _sorted_best(worst_case, 200).tolist()
    assert top_k(scores, 0)[0].size == 0


def test_search_pads_as_faiss_and_a_querys_answer_does_not_depend_on_its_batch() -> None:
    vectors, queries = _items(n=50)
    index = ExactInnerProduct(vectors)
    scores, ids = index.search(queries[:3], 60)
    assert ids.shape == (3, 60) and (ids[:, 50:] == -1).all() and np.isneginf(scores[:, 50:]).all()
    one_scores, one_ids = index.search(queries[1:2], 60)
    assert np.array_equal(one_ids[0], ids[1]) and np.array_equal(one_scores[0], scores[1])


def test_of_takes_a_cpu_flat_inner_product_index_only() -> None:
    vectors, _ = _items(n=100)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    wrapped = ExactInnerProduct.of(flat)
    assert wrapped is not None and wrapped.ntotal == 100 and np.array_equal(wrapped.vectors, vectors)
    assert ExactInnerProduct.of(faiss.IndexFlatL2(vectors.shape[1])) is None


def test_the_sample_threshold_lets_about_the_margin_through() -> None:
    """The cheap path's point: a few more than k items to sort, not all of them."""
    vectors, queries = _items(n=20_000, dim=32)
    passed = []
    for query in queries:
        scores = vectors @ query
        sample = scores[:: exact.SAMPLE_STRIDE]
        rank = int(1_000 / exact.SAMPLE_STRIDE * exact.SAMPLE_MARGIN) + 1
        passed.append(int((scores >= np.sort(sample)[-rank]).sum()))
    assert 1_000 <= np.median(passed) <= 1_600, passed
