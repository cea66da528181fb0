"""The GPU profile's layout on a real tritonserver: feature_assembly (rows, unbatched) -> a scorer
batching rows -> `scores`, through the unbatched ensembles. This machine's tritonserver (nvidia-pytriton's
build) has the Python backend alone and no GPU, so the scorers are the Python torch scorer with their
instance kind switched to KIND_CPU: the same configs, adapters, ensemble wiring and row graphs the GPU
runs, on the CPU. Scores must match the CPU profile's ONNX on the same features."""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from cascade.artifacts import ArtifactPaths
from cascade.features import FeatureTables, as_rows, assemble_requests
from cascade.servers.process import free_port
from cascade.servers.triton import start_triton
from cascade.settings import Settings
from cascade.specs import prerank_spec, rank_spec
from cascade.triton.config import on_cpu, parse, render
from cascade.triton.layout import pipeline_name
from export.onnx_export import row_graph_path, session
from export.repository import GpuScorers, write_repositories
from tests.integration.test_triton_parity import TIMESTAMP, pipeline_inputs

pytestmark = pytest.mark.integration
SPECS = {"prerank": prerank_spec, "rank": rank_spec}


@pytest.fixture(scope="module")
def gpu_layout(exported: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpcclient.InferenceServerClient]:
    s, root = exported, tmp_path_factory.mktemp("gpu_layout")
    paths = ArtifactPaths(s.artifacts_dir)
    onnx_dir = paths.onnx("rank").parent
    graphs = {n: (row_graph_path(onnx_dir, n), row_graph_path(onnx_dir, n, ".pt2")) for n in SPECS}
    model_root, ensemble_root = root / "models", root / "ensembles"
    write_repositories(
        model_root, ensemble_root, paths.tables, {n: (SPECS[n](s.history_len), paths.onnx(n)) for n in SPECS},
        s.history_len, s.max_batch_size, s.max_queue_delay_us, 1, profile="gpu",
        gpu=GpuScorers("python", "fp16", 4096, graphs),
    )
    for scorer in SPECS:  # no GPU here: the same model on a CPU instance
        path = model_root / scorer / "config.pbtxt"
        config = parse(path.read_text())
        assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
        path.write_text(render(on_cpu(config)))
    grpc_port = free_port()
    process = start_triton([model_root, ensemble_root], root / "run", s.triton_host, free_port(), grpc_port, free_port())
    try:
        yield grpcclient.InferenceServerClient(f"{s.triton_host}:{grpc_port}")
    finally:
        process.stop()


@pytest.mark.parametrize("scorer", ["prerank", "rank"])
@pytest.mark.parametrize("version", [None, 1])
def test_gpu_pipelines_score_as_the_cpu_profiles_onnx(exported: Settings, gpu_layout, scorer: str, version: int | None) -> None:
    paths = ArtifactPaths(exported.artifacts_dir)
    tables = FeatureTables.load(paths.tables)
    history = np.load(paths.user_history)[7]
    items = np.random.default_rng(1).choice(tables.n_items, 300, replace=False)
    served = gpu_layout.infer(pipeline_name(scorer, version), pipeline_inputs(7, items, history)).as_numpy("scores")

    features, _ = assemble_requests(tables, [(7, items, history, TIMESTAMP)])
    spec = SPECS[scorer](exported.history_len)
    direct = session(paths.onnx(scorer)).run(["score"], as_rows(features, spec.input_names))[0]
    assert served.shape == (300, 1)  # an unbatched ensemble: [rows, 1]; the orchestrator reads the bytes
    assert np.max(np.abs(served[:, 0] - direct)) < 1e-4  # fp16 applies on CUDA only: fp32 here


def test_concurrent_requests_are_batched_as_rows_and_answered_each_its_own(exported: Settings, gpu_layout) -> None:
    paths = ArtifactPaths(exported.artifacts_dir)
    tables = FeatureTables.load(paths.tables)
    histories = np.load(paths.user_history)
    rng = np.random.default_rng(2)
    requests = [(u, rng.choice(tables.n_items, n, replace=False)) for u, n in ((3, 50), (4, 1), (5, 200), (8, 120))]
    with ThreadPoolExecutor(len(requests)) as pool:  # at once: the dynamic batcher joins their rows
        answers = list(pool.map(
            lambda r: gpu_layout.infer("rank_pipeline_v1", pipeline_inputs(r[0], r[1], histories[r[0]])), requests
        ))
    spec = rank_spec(exported.history_len)
    ranker = session(paths.onnx("rank"))
    for (u, items), answer in zip(requests, answers):
        served = answer.as_numpy("scores")
        features, _ = assemble_requests(tables, [(u, items, histories[u], TIMESTAMP)])
        direct = ranker.run(["score"], as_rows(features, spec.input_names))[0]
        assert served.shape == (len(items), 1) and np.max(np.abs(served[:, 0] - direct)) < 1e-4, u


def test_a_request_without_candidates_is_refused_so_the_orchestrator_makes_none(exported: Settings, gpu_layout) -> None:
    """A batching scorer takes no batch of zero rows (Triton refuses it); `TritonScorer.score`
    answers an empty candidate list itself."""
    history = np.load(ArtifactPaths(exported.artifacts_dir).user_history)[1]
    with pytest.raises(InferenceServerException, match="byte size mismatch"):
        gpu_layout.infer("rank_pipeline", pipeline_inputs(1, np.array([], np.int64), history))


def test_a_bad_request_gets_its_own_error(exported: Settings, gpu_layout) -> None:
    history = np.load(ArtifactPaths(exported.artifacts_dir).user_history)[1]
    with pytest.raises(InferenceServerException, match="item_ids holds 999999"):
        gpu_layout.infer("rank_pipeline", pipeline_inputs(1, np.array([1, 999_999]), history))
    assert gpu_layout.infer("rank_pipeline", pipeline_inputs(1, np.array([1, 2]), history)).as_numpy("scores").shape == (2, 1)
