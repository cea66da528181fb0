"""Triton's pipelines against the same ONNX models run directly on features from the same code."""
from __future__ import annotations

import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from cascade.artifacts import ArtifactPaths
from cascade.features import FeatureTables, assemble_requests
from cascade.settings import Settings
from cascade.specs import USER_SIDE, rank_spec
from export.onnx_export import session

pytestmark = pytest.mark.integration
TIMESTAMP = 1_700_000_000


def pipeline_inputs(user_id: int, items: np.ndarray, history: np.ndarray) -> list[grpcclient.InferInput]:
    arrays = {
        "user_id": np.array([[user_id]], np.int64), "item_ids": items[None].astype(np.int64),
        "history": history[None].astype(np.int64), "timestamp": np.array([[TIMESTAMP]], np.int64),
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
    direct = session(paths.onnx("rank")).run(["score"], {n: features[n] for n in spec.input_names})[0]
    assert served.shape == (200,)
    assert np.max(np.abs(served - direct)) < 1e-5


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
    """Triton's `rank` serves the student's ONNX (same bytes), and scores held-out rows exactly as
    the offline evaluation does."""
    from cascade.artifacts import Manifest
    from cascade.schema import time_split
    from export.calibrate import sha256_file
    from export.datasets import load_dataset
    from export.eval_scorers import OnnxModel
    from export.train import RowFeatures

    paths = ArtifactPaths(exported.artifacts_dir)
    manifest = Manifest.read(paths.manifest)
    assert manifest.served["rank"] == "rank.onnx" and "student" in manifest.models["rank"]["role"]
    assert sha256_file(exported.model_repository / "rank" / "1" / "model.onnx") == manifest.models["rank"]["sha256"]
    assert manifest.models["teacher"]["flops_per_item"] > 5 * manifest.models["rank"]["flops_per_item"]

    log = load_dataset(exported).interactions
    _, test = time_split(log, exported.holdout_fraction)
    rows = np.flatnonzero(test)[:300]
    features = {k: v.numpy() for k, v in RowFeatures(FeatureTables.load(paths.tables), log)(rows).items()}
    evaluated = OnnxModel(paths.onnx("rank"))(features)

    # Held-out rows are of different users and times: one request per row, its user side sent once.
    names = rank_spec(exported.history_len).input_names
    answers: queue.Queue = queue.Queue()
    for row in range(len(rows)):
        inputs = []
        for name in names:
            array = features[name][row : row + 1] if name in USER_SIDE else features[name][row : row + 1][None]
            tensor = grpcclient.InferInput(name, list(array.shape), "INT64" if array.dtype == np.int64 else "FP32")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        grpc.async_infer("rank", inputs, callback=lambda result, error, row=row: answers.put((row, result, error)))
    served = np.zeros(len(rows), np.float32)
    for _ in range(len(rows)):
        row, result, error = answers.get(timeout=60)
        assert error is None, error
        served[row] = result.as_numpy("score")[0, 0]
    assert np.max(np.abs(served - evaluated)) < 1e-6
