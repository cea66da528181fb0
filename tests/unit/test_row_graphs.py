"""The GPU profile's scorer graphs (`export.onnx_export.export_row_graphs`): one row per candidate,
no `user_row`, no data-dependent op, a dynamic row axis; the same scores as the CPU profile's
request-shaped graph on CPU ONNX Runtime (≤ 1e-5), and the torch program the same as torch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cascade.models.scorers import PreRanker, StudentRanker
from cascade.specs import prerank_spec, rank_spec, triton_scorer
from export.onnx_export import (
    ROW_PARITY_TOLERANCE,
    ParityError,
    check_row_parity,
    export_onnx,
    export_row_graphs,
    session,
)
from tests.unit.test_request_shaped_scorers import CFG, FEATURES, broadcast, requests

# Ops a native backend (TensorRT) has no kernel for, or whose output shape depends on the data.
DATA_DEPENDENT = {"Unique", "NonZero", "Loop", "If", "Scan"}


@pytest.mark.parametrize(("model_class", "spec_of"), [(PreRanker, prerank_spec), (StudentRanker, rank_spec)])
def test_row_graphs_score_as_the_request_shaped_graph(model_class, spec_of, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = model_class(CFG).eval()
    spec = spec_of(CFG.history_len)
    rows = broadcast(requests(64, users=64, seed=1))  # sample rows: every row its own user
    export_onnx(model, spec, rows, tmp_path / f"{spec.name}.onnx")
    onnx_path, program_path = export_row_graphs(model, spec, rows, tmp_path)

    graph = onnx.load(onnx_path).graph
    assert [i.name for i in graph.input] == triton_scorer(spec).input_names == list(FEATURES)
    assert all(i.type.tensor_type.shape.dim[0].dim_param for i in graph.input)  # the row axis is dynamic
    assert not {node.op_type for node in graph.node} & DATA_DEPENDENT

    diff = check_row_parity(spec, rows, tmp_path / f"{spec.name}.onnx", onnx_path)
    assert diff <= ROW_PARITY_TOLERANCE

    feed = broadcast(requests(300, users=3, seed=2))  # another row count than the export's sample
    got = session(onnx_path).run(["score"], {n: feed[n] for n in FEATURES})[0]
    with torch.no_grad():
        expected = model(*[torch.from_numpy(feed[n]) for n in FEATURES]).numpy()
        program = torch.export.load(str(program_path)).module()
        from_program = program(*[torch.from_numpy(feed[n]) for n in FEATURES]).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(from_program, expected, rtol=0, atol=1e-6)


def test_row_parity_fails_loudly_when_the_graphs_disagree(tmp_path: Path) -> None:
    torch.manual_seed(0)
    spec = rank_spec(CFG.history_len)
    rows = broadcast(requests(32, users=32))
    export_onnx(StudentRanker(CFG).eval(), spec, rows, tmp_path / "rank.onnx")
    torch.manual_seed(1)  # other weights: not the same model
    onnx_path, _ = export_row_graphs(StudentRanker(CFG).eval(), spec, rows, tmp_path)
    with pytest.raises(ParityError, match="row graph vs request graph"):
        check_row_parity(spec, rows, tmp_path / "rank.onnx", onnx_path)


def test_the_torch_row_scorer_takes_scalars_per_row_as_n_or_n_by_1(tmp_path: Path) -> None:
    from cascade.triton.torch_rows import TorchRowScorer

    torch.manual_seed(0)
    model = StudentRanker(CFG).eval()
    spec = rank_spec(CFG.history_len)
    rows = broadcast(requests(40, users=5))
    _, program = export_row_graphs(model, spec, rows, tmp_path)
    scorer = TorchRowScorer(program, list(FEATURES))
    with torch.no_grad():
        expected = model(*[torch.from_numpy(rows[n]) for n in FEATURES]).numpy()
    np.testing.assert_allclose(scorer(rows), expected, rtol=0, atol=1e-6)
    as_column = {n: t[:, None] if t.ndim == 1 else t for n, t in rows.items()}  # as feature_assembly sends them
    np.testing.assert_allclose(scorer(as_column, frozenset({"item_id", "item_cat"})), expected, rtol=0, atol=1e-6)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="torch sees no CUDA device"):
            TorchRowScorer(program, list(FEATURES), "cuda:0")


def test_the_torch_row_scorer_moves_every_device_the_graph_names(tmp_path: Path) -> None:
    """torch.export records the export's device in ops that make tensors (a mask built on the CPU);
    moving only the weights left those on the CPU, and the first CUDA call failed (seen on an H200).
    On `meta` here, every device named in the graph and every weight must be the scorer's."""
    from cascade.triton.torch_rows import TorchRowScorer

    _, program = export_row_graphs(StudentRanker(CFG).eval(), rank_spec(CFG.history_len), broadcast(requests(8, users=2)), tmp_path)
    module = TorchRowScorer(program, list(FEATURES), "meta").module
    named = {torch.device(v) for node in module.graph.nodes for v in [node.kwargs.get("device")] if v is not None}
    assert named and named == {torch.device("meta")}
    assert {t.device.type for t in [*module.parameters(), *module.buffers()]} == {"meta"}
