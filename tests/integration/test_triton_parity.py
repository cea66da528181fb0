"""Triton's pipelines and two-stage model (the CPU profile's fused models) against the same ONNX models run in-process on
features from the same code."""
from __future__ import annotations

import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from cascade.artifacts import ArtifactPaths
from cascade.features import FeatureTables, as_rows, assemble_requests
from cascade.settings import Settings
from cascade.specs import rank_spec
from cascade.triton.batching import FeatureRequest
from cascade.triton.fused import FusedScorer
from cascade.ordering import best_first
from cascade.triton.layout import ONNX_FILE, PRERANK_ONNX_FILE, RANK_ONNX_FILE, TABLES_FILE, pipeline_name, two_stage_name
from cascade.triton.two_stage import TwoStageRequest, TwoStageScorer
from export.onnx_export import session
from orchestrator.clients.kserve_http import HttpInference
from orchestrator.clients.triton import TritonScorer

pytestmark = pytest.mark.integration
TIMESTAMP = 1_700_000_000


def pipeline_inputs(user_id: int, items: np.ndarray, history: np.ndarray, timestamp: int = TIMESTAMP) -> list[grpcclient.InferInput]:
    arrays = {
        "user_id": np.array([[user_id]], np.int64), "item_ids": items[None].astype(np.int64),
        "history": history[None].astype(np.int64), "timestamp": np.array([[timestamp]], np.int64),
    }
    inputs = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


@pytest.fixture(scope="module")
def grpc(exported: Settings, triton) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(exported.triton_grpc_url)


def test_rank_pipeline_matches_onnx_on_same_features(exported: Settings, grpc) -> None:
    paths = ArtifactPaths(exported.artifacts_dir)
    tables = FeatureTables.load(paths.tables)
    history = np.load(paths.user_history)[11]
    items = np.random.default_rng(0).choice(tables.n_items, 200, replace=False)
    served = grpc.infer("rank_pipeline", pipeline_inputs(11, items, history)).as_numpy("scores")[0]

    features, _ = assemble_requests(tables, [(11, items, history, TIMESTAMP)])
    spec = rank_spec(exported.history_len)
    direct = session(paths.onnx("rank")).run(["score"], as_rows(features, spec.input_names))[0]
    assert served.shape == (200,)
    assert np.max(np.abs(served - direct)) < 1e-5


def test_served_pinned_pipelines_give_the_in_process_fused_scores(exported: Settings, grpc) -> None:
    """Bit for bit: the served fused model runs FusedScorer over the files of its version directory."""
    paths = ArtifactPaths(exported.artifacts_dir)
    history = np.load(paths.user_history)[5]
    rng = np.random.default_rng(1)
    for scorer, n in (("prerank", 500), ("rank", 200)):
        pipeline = pipeline_name(scorer, 1)
        folder = exported.ensemble_repository / pipeline / "1"
        in_process = FusedScorer(FeatureTables.load(folder / TABLES_FILE), folder / ONNX_FILE)
        items = rng.choice(in_process.tables.n_items, n, replace=False)
        served = grpc.infer(pipeline, pipeline_inputs(5, items, history)).as_numpy("scores")[0]
        expected = in_process.score([FeatureRequest(5, items.astype(np.int64), history.astype(np.int64), TIMESTAMP)])[0]
        np.testing.assert_array_equal(served, expected)


def test_the_two_stage_model_gives_the_two_pipelines_answer(exported: Settings, grpc) -> None:
    """One call (pre-rank -> best 200 -> rank) against the two pinned pipelines called one after the
    other, and bit for bit against the in-process TwoStageScorer over its version directory's files."""
    paths = ArtifactPaths(exported.artifacts_dir)
    history = np.load(paths.user_history)[7]
    items = np.random.default_rng(2).choice(exported.n_items, 600, replace=False).astype(np.int64)
    keep = grpcclient.InferInput("keep", [1, 1], "INT64")
    keep.set_data_from_numpy(np.array([[200]], np.int64))
    served = grpc.infer(two_stage_name(1, 1), [*pipeline_inputs(7, items, history), keep])
    kept, prerank, rank = (served.as_numpy(n)[0] for n in ("kept", "prerank_scores", "scores"))

    pre = grpc.infer(pipeline_name("prerank", 1), pipeline_inputs(7, items, history)).as_numpy("scores")[0]
    np.testing.assert_array_equal(kept, best_first(pre, 200))
    np.testing.assert_allclose(prerank, pre[kept], rtol=0, atol=1e-6)
    ranked = grpc.infer(pipeline_name("rank", 1), pipeline_inputs(7, items[kept], history)).as_numpy("scores")[0]
    np.testing.assert_allclose(rank, ranked, rtol=0, atol=1e-6)

    folder = exported.ensemble_repository / two_stage_name(1, 1) / "1"
    in_process = TwoStageScorer(FeatureTables.load(folder / TABLES_FILE), folder / PRERANK_ONNX_FILE, folder / RANK_ONNX_FILE)
    expected = in_process.score([TwoStageRequest(FeatureRequest(7, items, history.astype(np.int64), TIMESTAMP), 200)])[0]
    np.testing.assert_array_equal(kept, expected.kept)
    np.testing.assert_array_equal(rank, expected.rank)


async def test_http_and_grpc_calls_give_the_same_scores_and_errors(exported: Settings, triton) -> None:
    """The orchestrator's two transports (CASCADE_TRITON_INFER_PROTOCOL) against the same server."""
    history = np.load(ArtifactPaths(exported.artifacts_dir).user_history)[9].astype(np.int64)
    items = np.random.default_rng(3).choice(exported.n_items, 400, replace=False).astype(np.int64)
    http = HttpInference(exported.triton_host, exported.triton_http_port, 5.0)
    over_http = TritonScorer(exported.triton_grpc_url, 5.0, http=http)
    over_grpc = TritonScorer(exported.triton_grpc_url, 5.0)
    try:
        versions = {"prerank": 1, "rank": 1}
        a, b = [await s.score_two_stage(versions, 9, items, history, TIMESTAMP, 100) for s in (over_http, over_grpc)]
        np.testing.assert_array_equal(a.kept, b.kept)
        np.testing.assert_array_equal(a.rank, b.rank)
        a, b = [await s.score("prerank", 1, 9, items, history, TIMESTAMP) for s in (over_http, over_grpc)]
        np.testing.assert_array_equal(a, b)
        assert await over_http.ready(["rank_pipeline_v1", "no_such_model"]) == {"rank_pipeline_v1": True, "no_such_model": False}
        outside = np.array([0, exported.n_items + 5], np.int64)
        for scorer in (over_http, over_grpc):
            with pytest.raises(InferenceServerException, match="outside the catalogue"):
                await scorer.score("rank", 1, 9, outside, history, TIMESTAMP)
    finally:
        await over_http.close()
        await over_grpc.close()


def test_out_of_catalogue_item_is_invalid_argument(exported: Settings, grpc) -> None:
    history = np.full(exported.history_len, -1)
    with pytest.raises(InferenceServerException, match="outside the catalogue"):
        grpc.infer("prerank_pipeline", pipeline_inputs(1, np.array([0, exported.n_items + 5]), history))


def test_concurrent_requests_each_get_their_own_scores(exported: Settings, grpc) -> None:
    """Requests of different sizes batched together must come back split correctly."""
    history = np.full(exported.history_len, -1)
    sizes = [3, 50, 7, 120]
    answers: queue.Queue = queue.Queue()
    for size in sizes:
        grpc.async_infer(
            "prerank_pipeline", pipeline_inputs(2, np.arange(size), history),
            callback=lambda result, error, size=size: answers.put((size, result, error)),
        )
    results = dict((size, (result, error)) for size, result, error in (answers.get(timeout=30) for _ in sizes))
    for size in sizes:
        result, error = results[size]
        assert error is None
        single = grpc.infer("prerank_pipeline", pipeline_inputs(2, np.arange(size), history)).as_numpy("scores")[0]
        np.testing.assert_allclose(result.as_numpy("scores")[0], single, atol=1e-6)


def test_served_rank_is_the_distilled_student_and_scores_as_evaluated(exported: Settings, grpc) -> None:
    """Triton's `rank_pipeline` serves the student's ONNX (same bytes), and scores held-out rows exactly
    as the offline code does given what serving knows (the training totals, not each row's as-of counts)."""
    from cascade.artifacts import Manifest
    from cascade.artifacts import sha256_file
    from export.datasets import load_dataset, split_log
    from export.eval_scorers import OnnxModel
    from export.train import RowFeatures

    paths = ArtifactPaths(exported.artifacts_dir)
    manifest = Manifest.read(paths.manifest)
    assert manifest.served["rank"] == "rank.onnx" and "student" in manifest.models["rank"]["role"]
    assert sha256_file(exported.model_repository / "rank_pipeline" / "1" / ONNX_FILE) == manifest.models["rank"]["sha256"]
    assert manifest.models["teacher"]["flops_per_item"] > 5 * manifest.models["rank"]["flops_per_item"]

    log = load_dataset(exported).interactions
    test = split_log(log, exported).test
    rows = np.flatnonzero(test)[:300]
    row_features = RowFeatures(FeatureTables.load(paths.tables), log, as_served=True)
    features = {k: v.numpy() for k, v in row_features(rows).items()}
    evaluated = OnnxModel(paths.onnx("rank"))(features)

    # Held-out rows are of different users and times: one raw request per row (its user, item, history
    # before the row, and time), sent concurrently so the server batches them.
    histories = row_features.history.rows(rows, exported.history_len)
    answers: queue.Queue = queue.Queue()
    for i, row in enumerate(rows):
        inputs = pipeline_inputs(int(log.user[row]), log.item[row : row + 1], histories[i], int(log.ts[row]))
        grpc.async_infer("rank_pipeline", inputs, callback=lambda result, error, i=i: answers.put((i, result, error)))
    served = np.zeros(len(rows), np.float32)
    for _ in range(len(rows)):
        i, result, error = answers.get(timeout=60)
        assert error is None, error
        served[i] = result.as_numpy("scores")[0, 0]
    assert np.max(np.abs(served - evaluated)) < 1e-6
