"""Scorers embed each distinct history once: the same scores as embedding every row, in torch and in ONNX."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cascade.features import FeatureConfig
from cascade.models.scorers import PreRanker, StudentRanker
from cascade.models.teacher import TeacherRanker
from cascade.specs import rank_spec
from export.onnx_export import export_onnx, session

CFG = FeatureConfig(history_len=6, item_buckets=97, category_buckets=11, user_field_buckets=13)


def rows(n: int, users: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`n` candidate rows of `users` requests: each request's user side repeated on its rows."""
    rng = np.random.default_rng(seed)
    owner = np.sort(rng.integers(0, users, n))
    hist = rng.integers(1, CFG.item_buckets, (users, CFG.history_len))
    hist[:, :2] = 0  # padded positions
    return {
        "user_cat": rng.integers(0, 13, (users, 3))[owner], "user_num": rng.random((users, 1), np.float32)[owner],
        "item_id": rng.integers(1, 97, n), "item_cat": rng.integers(1, 11, n),
        "item_num": rng.random((n, 2), np.float32), "hist_item": hist[owner], "hist_cat": (hist % 11)[owner],
        "ctx": np.stack([rng.integers(0, 24, users), rng.integers(0, 7, users)], 1)[owner],
    }


@pytest.mark.parametrize("model_class", [PreRanker, StudentRanker, TeacherRanker])
def test_deduplicated_histories_score_like_every_row(model_class) -> None:
    torch.manual_seed(0)
    model = model_class(CFG).eval()
    features = {k: torch.from_numpy(v) for k, v in rows(40, users=3).items()}
    with torch.no_grad():
        fast = model(**features)
        model.dedupe_histories = False
        every_row = model(**features)
    torch.testing.assert_close(fast, every_row, rtol=0, atol=1e-6)


def test_the_onnx_graph_deduplicates_and_matches_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = PreRanker(CFG).eval()
    spec = rank_spec(CFG.history_len)
    sample = rows(16, users=2)
    path = tmp_path / "prerank.onnx"
    export_onnx(model, spec, sample, path)
    many = rows(300, users=5, seed=1)  # other sizes and user counts than the export sample
    onnx_scores = session(path).run(["score"], {n: many[n] for n in spec.input_names})[0]
    with torch.no_grad():
        torch_scores = model(**{k: torch.from_numpy(v) for k, v in many.items()}).numpy()
    np.testing.assert_allclose(onnx_scores, torch_scores, rtol=0, atol=1e-6)
    assert "Unique" in {node.op_type for node in onnx.load(str(path)).graph.node}


def test_training_embeds_every_row_and_gets_the_same_gradients(monkeypatch) -> None:
    """Training batches are rows of many users: no Unique there, and nothing changes but the cost."""
    torch.manual_seed(0)
    model = StudentRanker(CFG)
    features = {k: torch.from_numpy(v) for k, v in rows(40, users=3).items()}
    model.train()
    with monkeypatch.context() as patch:
        patch.setattr(torch, "unique", lambda *a, **k: (_ for _ in ()).throw(AssertionError("unique in training")))
        model(**features).sum().backward()
    trained_grad = model.item.item.weight.grad.clone()
    model.zero_grad()
    model.eval()  # deduplicated path, same function
    model(**features).sum().backward()
    torch.testing.assert_close(model.item.item.weight.grad, trained_grad, rtol=0, atol=1e-6)
