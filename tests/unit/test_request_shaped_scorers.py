"""Request-shaped scorers: the user side once per user, candidates naming their user's row
(`cascade.specs.USER_ROW`); the same scores as every row carrying its own user side, in torch and
in ONNX."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cascade.features import FeatureConfig, as_rows, random_rows
from cascade.models.scorers import PreRanker, StudentRanker
from cascade.models.teacher import TeacherEnsemble, TeacherRanker
from cascade.specs import USER_SIDE, prerank_spec, rank_spec
from export.onnx_export import check_parity, export_onnx, session

CFG = FeatureConfig(history_len=6, item_buckets=97, category_buckets=11, user_field_buckets=13)
FEATURES = ("user_cat", "user_num", "item_id", "item_cat", "item_num", "hist_item", "hist_cat", "ctx")


def requests(n: int, users: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`n` candidates of `users` requests, request-shaped: the user side once per user, `user_row`
    naming each candidate's (users in any order, some with no candidate)."""
    rng = np.random.default_rng(seed)
    user_side = {k: v for k, v in random_rows(CFG, users, rng).items() if k in USER_SIDE}
    user_side["hist_item"][:, :2] = user_side["hist_cat"][:, :2] = 0  # padded positions
    item_side = {k: v for k, v in random_rows(CFG, n, rng).items() if k not in USER_SIDE}
    return {**user_side, **item_side, "user_row": rng.integers(0, users, n)}


def broadcast(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same candidates as rows, each carrying its own user side."""
    return {n: t[feed["user_row"]] if n in USER_SIDE else t for n, t in feed.items() if n != "user_row"}


def torch_scores(model: torch.nn.Module, tensors: dict[str, np.ndarray]) -> torch.Tensor:
    with torch.no_grad():
        return model(*[torch.from_numpy(tensors[n]) for n in (*FEATURES, "user_row") if n in tensors])


def teacher_ensemble(cfg: FeatureConfig) -> TeacherEnsemble:
    return TeacherEnsemble([TeacherRanker(cfg), TeacherRanker(cfg)])


@pytest.mark.parametrize("model_class", [PreRanker, StudentRanker, TeacherRanker, teacher_ensemble])
def test_the_user_side_once_per_user_scores_like_every_row(model_class) -> None:
    torch.manual_seed(0)
    model = model_class(CFG).eval()
    feed = requests(40, users=4)
    torch.testing.assert_close(torch_scores(model, feed), torch_scores(model, broadcast(feed)), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("model_class", "spec"), [(PreRanker, prerank_spec), (StudentRanker, rank_spec)])
def test_the_onnx_graph_is_request_shaped_and_matches_torch(model_class, spec, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = model_class(CFG).eval()
    spec = spec(CFG.history_len)
    rows = broadcast(requests(16, users=3))  # export from row tensors, as the export does
    path = tmp_path / "scorer.onnx"
    export_onnx(model, spec, rows, path)
    assert check_parity(model, spec, rows, path) <= 1e-6
    for feed in (requests(300, users=5, seed=1), requests(1, users=1, seed=2), requests(7, users=9, seed=3)):
        onnx_scores = session(path).run(["score"], {n: feed[n] for n in spec.input_names})[0]
        np.testing.assert_allclose(onnx_scores, torch_scores(model, broadcast(feed)).numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(  # rows fed as they stand: user_row = arange
        session(path).run(["score"], as_rows(rows))[0], torch_scores(model, rows).numpy(), rtol=0, atol=1e-6)
    graph = onnx.load(str(path)).graph
    assert "Unique" not in {node.op_type for node in graph.node}
    assert [i.name for i in graph.input] == spec.input_names


def test_training_rows_never_gather_and_get_the_same_gradients() -> None:
    """Training batches are rows of many users (user_row None): the same function and gradients as
    the request-shaped path over the same candidates."""
    torch.manual_seed(0)
    model = StudentRanker(CFG)
    feed = requests(40, users=3)
    rows = {k: torch.from_numpy(v) for k, v in broadcast(feed).items()}
    model.train()
    model(*[rows[n] for n in FEATURES]).sum().backward()
    trained_grad = model.item.item.weight.grad.clone()
    model.zero_grad()
    model(*[torch.from_numpy(feed[n]) for n in (*FEATURES, "user_row")]).sum().backward()
    torch.testing.assert_close(model.item.item.weight.grad, trained_grad, rtol=0, atol=1e-6)
