"""GPU recall's code on the CPU: `TorchExactInnerProduct` (device "cpu", the code CUDA runs) against
faiss's flat index and `ExactInnerProduct`, under concurrent searches, and `load_index`'s choice of
backend (faiss GPU -> torch CUDA -> CPU) with the GPU parts faked."""
from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from cascade.recall import gpu
from cascade.recall.ann import load_index
from cascade.recall.exact import ExactInnerProduct
from cascade.recall.gpu import TorchExactInnerProduct
from export.faiss_index import build_index, write_index


def _items(n: int, dim: int = 32, queries: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype(np.float32), rng.normal(size=(queries, dim)).astype(np.float32)


def test_overlap_at_100_with_faiss_flat() -> None:
    items, queries = _items(20_000)
    flat = faiss.IndexFlatIP(items.shape[1])
    flat.add(items)
    expected_scores, expected = flat.search(queries, 100)
    scores, ids = TorchExactInnerProduct(items, "cpu").search(queries, 100)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (100, 100)
    overlap = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(ids, expected)])
    assert overlap >= 0.99, overlap
    np.testing.assert_allclose(scores, expected_scores, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_ties_go_to_the_lower_id_as_exact_inner_product() -> None:
    """Small integers multiply and add exactly, so both indexes see the same scores, with ties
    everywhere, across the cut too (the host fallback)."""
    rng = np.random.default_rng(1)
    items = rng.integers(-1, 2, size=(3_000, 4)).astype(np.float32)  # 81 distinct rows
    queries = rng.integers(-2, 3, size=(20, 4)).astype(np.float32)
    queries[0] = 0  # every item ties
    for k in (1, 50, 1_000):
        scores, ids = TorchExactInnerProduct(items, "cpu").search(queries, k)
        expected_scores, expected_ids = ExactInnerProduct(items).search(queries, k)
        np.testing.assert_array_equal(ids, expected_ids)
        np.testing.assert_array_equal(scores, expected_scores)
    assert ids[0].tolist() == list(range(1_000))


def test_pads_as_faiss_and_a_querys_answer_does_not_depend_on_its_batch() -> None:
    items, queries = _items(5_000, queries=40)
    index = TorchExactInnerProduct(items, "cpu")
    alone = [index.search(query[None], 300) for query in queries]
    for size in (2, gpu.QUERY_BLOCK, gpu.QUERY_BLOCK + 1, 40):  # one block, two blocks, a padded last block
        scores, ids = index.search(queries[:size], 300)
        for row, (lone_scores, lone_ids) in enumerate(alone[:size]):
            np.testing.assert_array_equal(ids[row], lone_ids[0])
            np.testing.assert_array_equal(scores[row], lone_scores[0])  # the same bits
    small = TorchExactInnerProduct(items[:50], "cpu")
    scores, ids = small.search(queries[:3], 60)
    assert ids.shape == (3, 60) and (ids[:, 50:] == -1).all() and np.isneginf(scores[:, 50:]).all()
    assert small.search(queries[:3], 0)[1].shape == (3, 0) and small.search(queries[:0], 5)[1].shape == (0, 5)


def test_concurrent_searches_get_the_single_threaded_answers() -> None:
    items, queries = _items(5_000, queries=64)
    index = TorchExactInnerProduct(items, "cpu")
    sizes = [1, 3, 16, 17]
    batches = [queries[i % 48 : i % 48 + sizes[i % len(sizes)]] for i in range(50)]
    expected = [index.search(batch, 200) for batch in batches]
    mismatches: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def searcher(thread: int) -> None:
        try:
            for i in range(50):
                j = (i * 7 + thread * 11) % len(batches)  # threads walk the batches in different orders
                scores, ids = index.search(batches[j], 200)
                if not (np.array_equal(ids, expected[j][1]) and np.array_equal(scores, expected[j][0])):
                    mismatches.append((thread, j))
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=searcher, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not mismatches, (errors, mismatches[:5])


def test_of_reads_the_vectors_of_every_exported_kind() -> None:
    items, queries = _items(2_000, dim=8, queries=5)
    for kind in ("flat", "ivf", "hnsw"):
        index = TorchExactInnerProduct.of(build_index(items, kind=kind), "cpu")
        assert index.ntotal == 2_000 and np.array_equal(index.vectors.numpy(), items)
    with pytest.raises(ValueError, match="inner-product"):
        TorchExactInnerProduct.of(faiss.IndexFlatL2(8), "cpu")


@pytest.fixture
def index_files(tmp_path: Path) -> dict[str, Path]:
    items, _ = _items(2_000, dim=8)
    paths = {kind: tmp_path / f"{kind}.faiss" for kind in ("flat", "ivf", "hnsw")}
    for kind, path in paths.items():
        write_index(build_index(items, kind=kind), path)
    return paths


def test_load_index_without_a_gpu_wanted_never_imports_torch(index_files: dict[str, Path]) -> None:
    script = (
        "import sys; from cascade.recall.ann import load_index; "
        f"index = load_index({str(index_files['flat'])!r}, use_gpu=False); "
        "assert type(index).__name__ == 'ExactInnerProduct', type(index); "
        "assert 'torch' not in sys.modules and 'cascade.recall.gpu' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])


def test_load_index_without_torch_installed_takes_the_cpu_path(
    index_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    assert isinstance(load_index(index_files["flat"], use_gpu=True), ExactInnerProduct)
    assert isinstance(load_index(index_files["ivf"], use_gpu=True, nprobe=3), faiss.IndexIVFFlat)


def test_load_index_takes_torch_on_cuda_for_every_kind(
    index_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """faiss-cpu with torch seeing CUDA (faked: the torch index is built on the CPU instead)."""
    devices: list[str] = []
    build = TorchExactInnerProduct.of

    def on_cpu(index: faiss.Index, device: str) -> TorchExactInnerProduct:
        devices.append(device)
        return build(index, "cpu")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(TorchExactInnerProduct, "of", staticmethod(on_cpu))
    for kind, path in index_files.items():
        assert isinstance(load_index(path), TorchExactInnerProduct), kind
    assert devices == ["cuda"] * 3
    assert isinstance(load_index(index_files["flat"], use_gpu=False), ExactInnerProduct)


def test_load_index_moves_flat_and_ivf_to_faiss_gpu_and_warns_on_hnsw(
    index_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """faiss with GPU support (faked) and torch without CUDA: HNSW stays with faiss on the CPU."""
    moved: list[faiss.Index] = []

    class FakeGpuIndex:
        pass

    def to_gpu(resources: object, device: int, index: faiss.Index) -> FakeGpuIndex:
        moved.append(index)
        return FakeGpuIndex()

    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert isinstance(load_index(index_files["flat"]), FakeGpuIndex)
    assert isinstance(load_index(index_files["ivf"], nprobe=7), FakeGpuIndex)
    assert [type(index) for index in moved] == [faiss.IndexFlatIP, faiss.IndexIVFFlat] and moved[1].nprobe == 7
    with caplog.at_level(logging.WARNING, logger="cascade.recall.ann"):
        hnsw = load_index(index_files["hnsw"])
    assert isinstance(hnsw, faiss.IndexHNSW) and len(moved) == 2
    assert "HNSW" in caplog.text and "IVF" in caplog.text
