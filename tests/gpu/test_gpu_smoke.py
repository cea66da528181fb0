"""GPU smoke test: runs where CUDA is visible (the NGC image, a lent GPU machine); skips elsewhere,
and fails instead under `--require-cuda` (`make gpu-smoke`) when there is no CUDA device."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def _cuda_providers() -> list[str]:
    ort = pytest.importorskip("onnxruntime")
    return [p for p in ort.get_available_providers() if p == "CUDAExecutionProvider"]


def test_faiss_index_moves_to_gpu_and_agrees_with_cpu(tmp_path) -> None:
    faiss = pytest.importorskip("faiss")
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        pytest.skip("faiss has no GPU support or sees no GPU")
    from cascade.recall.ann import load_index
    from export.faiss_index import build_index, write_index

    vectors = np.random.default_rng(0).normal(size=(5_000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    write_index(build_index(vectors), tmp_path / "items.faiss")
    gpu_index = load_index(tmp_path / "items.faiss", use_gpu=True)
    cpu_index = load_index(tmp_path / "items.faiss", use_gpu=False)
    assert "Gpu" in type(gpu_index).__name__
    _, gpu_ids = gpu_index.search(vectors[:10], 20)
    _, cpu_ids = cpu_index.search(vectors[:10], 20)
    assert (gpu_ids[:, 0] == np.arange(10)).all()
    assert np.mean([len(set(g) & set(c)) / 20 for g, c in zip(gpu_ids, cpu_ids)]) > 0.95


def _cuda_torch_index(items: np.ndarray):  # -> cascade.recall.gpu.TorchExactInnerProduct
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    from cascade.recall.gpu import TorchExactInnerProduct

    return TorchExactInnerProduct(items, "cuda")


def test_torch_exact_recall_on_cuda_agrees_with_the_cpu_flat_search(tmp_path) -> None:
    """Top-100 overlap with the CPU's exact flat search >= 0.99 (the numpy one: faiss may be absent,
    as on the lent GPU machine); where faiss-cpu is installed, load_index picks torch on CUDA."""
    from cascade.recall.ann import load_index
    from cascade.recall.exact import ExactInnerProduct
    from cascade.recall.gpu import TorchExactInnerProduct

    rng = np.random.default_rng(0)
    items, queries = rng.normal(size=(20_000, 32)).astype(np.float32), rng.normal(size=(100, 32)).astype(np.float32)
    index = _cuda_torch_index(items)
    _, expected = ExactInnerProduct(items).search(queries, 100)
    scores, ids = index.search(queries, 100)
    assert np.mean([len(set(a) & set(b)) / 100 for a, b in zip(ids, expected)]) >= 0.99
    lone_scores, lone_ids = index.search(queries[5:6], 100)  # a query's bits in any batch, as on the CPU
    assert np.array_equal(lone_ids[0], ids[5]) and np.array_equal(lone_scores[0], scores[5])
    try:
        import faiss
    except ImportError:
        return
    if not hasattr(faiss, "StandardGpuResources"):  # faiss-cpu: load_index picks torch on CUDA
        from export.faiss_index import build_index, write_index

        write_index(build_index(items, kind="flat"), tmp_path / "items.faiss")
        assert isinstance(load_index(tmp_path / "items.faiss"), TorchExactInnerProduct)


def test_torch_exact_recall_on_cuda_under_concurrent_searches() -> None:
    """8 threads x 50 searches (a thread's own CUDA stream each) get the single-threaded answers."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(1)
    items, queries = rng.normal(size=(200_000, 32)).astype(np.float32), rng.normal(size=(64, 32)).astype(np.float32)
    index = _cuda_torch_index(items)
    batches = [queries[i % 48 : i % 48 + (1, 3, 16, 17)[i % 4]] for i in range(50)]
    expected = [index.search(batch, 1_000) for batch in batches]
    order = [(i * 7 + t * 11) % len(batches) for t in range(8) for i in range(50)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda j: index.search(batches[j], 1_000), order))
    for j, (scores, ids) in zip(order, answers):
        assert np.array_equal(ids, expected[j][1]) and np.array_equal(scores, expected[j][0]), j


def test_onnxruntime_cuda_runs_a_scorer(tmp_path) -> None:
    if not _cuda_providers():
        pytest.skip("onnxruntime has no CUDAExecutionProvider here")
    import onnxruntime as ort
    import torch

    from cascade.features import FeatureConfig
    from cascade.models.scorers import StudentRanker
    from cascade.specs import rank_spec
    from export.onnx_export import export_onnx

    cfg = FeatureConfig(history_len=8, item_buckets=101, category_buckets=11, user_field_buckets=11)
    spec = rank_spec(8)
    rng = np.random.default_rng(0)
    sample = {
        t.name: (rng.integers(0, 7, size=(64, *t.dims)) if t.dtype == np.int64 else rng.normal(size=(64, *t.dims))).astype(t.dtype)
        for t in spec.inputs
    }
    sample["ctx"][:, 1] %= 7
    model = StudentRanker(cfg)
    export_onnx(model, spec, sample, tmp_path / "rank.onnx")
    gpu = ort.InferenceSession(str(tmp_path / "rank.onnx"), providers=["CUDAExecutionProvider"])
    got = gpu.run(["score"], sample)[0]
    with torch.no_grad():
        expected = model(*[torch.from_numpy(sample[n]) for n in spec.input_names]).numpy()
    assert np.max(np.abs(got - expected)) < 1e-3


def test_the_row_graph_on_cuda_scores_as_the_cpu_onnx(tmp_path) -> None:
    """The GPU profile's Python scorer (torch on CUDA): FP32 within 1e-4 of CPU ONNX Runtime on the
    request-shaped graph, FP16 with Kendall tau >= 0.99."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    from cascade.metrics import kendall_tau
    from cascade.models.scorers import StudentRanker
    from cascade.specs import rank_spec
    from cascade.triton.torch_rows import TorchRowScorer
    from export.onnx_export import export_onnx, export_row_graphs, session
    from tests.unit.test_request_shaped_scorers import CFG, FEATURES, broadcast, requests

    torch.manual_seed(0)
    model, spec = StudentRanker(CFG).eval(), rank_spec(CFG.history_len)
    rows = broadcast(requests(2_048, users=64, seed=3))
    export_onnx(model, spec, rows, tmp_path / "rank.onnx")
    _, program = export_row_graphs(model, spec, rows, tmp_path)
    cpu = session(tmp_path / "rank.onnx").run(["score"], {**rows, "user_row": np.arange(2_048)})[0]
    fp32 = TorchRowScorer(program, list(FEATURES), "cuda")(rows)
    fp16 = TorchRowScorer(program, list(FEATURES), "cuda", fp16=True)(rows)
    assert np.max(np.abs(fp32 - cpu)) <= 1e-4
    assert kendall_tau(cpu, fp16) >= 0.99
