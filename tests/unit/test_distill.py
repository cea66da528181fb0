"""Distillation moves the student toward the teacher; resumed training equals uninterrupted training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cascade.features import FeatureConfig, build_tables
from cascade.models.scorers import StudentRanker
from cascade.models.teacher import TeacherRanker
from cascade.specs import RANK_FEATURES
from export.checkpoints import Checkpoints, Progress
from export.distill import DistillWeights, binary_kl, distillation_loss
from export.synthetic import generate
from export.train import RowFeatures, Schedule, fit

CONFIG = FeatureConfig(history_len=10, item_buckets=1_009, category_buckets=101, user_field_buckets=101)


@pytest.fixture(scope="module")
def rows_and_features():
    data = generate(n_users=60, n_items=300, n_interactions=3_000, n_categories=6, seed=3)
    tables = build_tables(data, data.interactions, CONFIG)
    features = RowFeatures(tables, data.interactions)
    return np.arange(len(data.interactions)), features, torch.from_numpy(data.interactions.label)


def test_binary_kl_is_zero_for_equal_logits_and_positive_otherwise() -> None:
    a = torch.tensor([-2.0, 0.0, 3.0])
    assert binary_kl(a, a, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    assert binary_kl(a, -a, 2.0).item() > 0.1


def test_loss_is_pure_label_bce_when_label_weight_is_one() -> None:
    s, t, y = torch.tensor([0.3, -1.0]), torch.tensor([2.0, 2.0]), torch.tensor([1.0, 0.0])
    loss = distillation_loss(s, t, y, DistillWeights(temperature=3.0, label=1.0, hint=0.0))
    assert loss.item() == pytest.approx(torch.nn.functional.binary_cross_entropy_with_logits(s, y).item())


def test_a_short_distillation_run_shrinks_the_kl_to_the_teacher(rows_and_features) -> None:
    rows, features, labels = rows_and_features
    torch.manual_seed(0)
    teacher, student = TeacherRanker(CONFIG, dim=8), StudentRanker(CONFIG)
    with torch.no_grad():  # an untrained teacher says ~0.5 everywhere; spread its logits to have something to learn
        teacher.out.weight.mul_(30.0)
    regressor = torch.nn.Linear(student.hint_dim, teacher.hint_dim)
    batch = features(rows[:1_024])
    x = [batch[n] for n in RANK_FEATURES]
    with torch.no_grad():
        t_hidden, t_logits = teacher.hidden_and_logits(*x)
        before = binary_kl(t_logits, student.logits(*x), 2.0).item()
    weights = DistillWeights(temperature=2.0, label=0.2, hint=0.1)
    opt = torch.optim.Adam([*student.parameters(), *regressor.parameters()], lr=3e-3)
    for _ in range(60):
        hidden = student.hidden(*x)
        loss = distillation_loss(student.out(hidden).squeeze(1), t_logits, labels[rows[:1_024]], weights, regressor(hidden), t_hidden)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = binary_kl(t_logits, student.logits(*x), 2.0).item()
    assert after < 0.5 * before, (before, after)


def _train(rows, features, labels, root: Path, epochs: int) -> StudentRanker:
    torch.manual_seed(1)
    model = StudentRanker(CONFIG)

    def loss(batch_rows: np.ndarray) -> torch.Tensor:
        f = features(batch_rows)
        return torch.nn.functional.binary_cross_entropy_with_logits(model.logits(*[f[n] for n in RANK_FEATURES]), labels[batch_rows])

    fit("student", model, loss, rows, Schedule(epochs, 256, 5, Checkpoints(root, {"run": "test"})))
    return model


def test_resumed_training_equals_uninterrupted_training(rows_and_features, tmp_path: Path) -> None:
    rows, features, labels = rows_and_features
    straight = _train(rows, features, labels, tmp_path / "straight", epochs=2)
    _train(rows, features, labels, tmp_path / "resumed", epochs=1)
    resumed = _train(rows, features, labels, tmp_path / "resumed", epochs=2)  # picks up after epoch 1
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, msg=f"{name} differs after resume")


def test_a_checkpoint_of_another_run_is_not_resumed(rows_and_features, tmp_path: Path) -> None:
    model = StudentRanker(CONFIG)
    opt = torch.optim.Adam(model.parameters())
    Checkpoints(tmp_path, {"seed": 1}).save("student", model, opt, Progress(epochs_done=3))
    assert Checkpoints(tmp_path, {"seed": 2}).restore("student", model, opt).epochs_done == 0
    assert Checkpoints(tmp_path, {"seed": 1}).restore("student", model, opt).epochs_done == 3


def test_training_stops_once_validation_stops_improving_and_keeps_the_best_epoch(rows_and_features, tmp_path: Path) -> None:
    rows, features, labels = rows_and_features
    torch.manual_seed(1)
    model = StudentRanker(CONFIG)
    scores = iter([0.50, 0.60, 0.70, 0.65, 0.66, 0.90])  # the start, then best at epoch 2, two worse: stop before the 0.90
    weights: list[dict] = []

    def validate() -> float:
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    def loss(batch_rows: np.ndarray) -> torch.Tensor:
        f = features(batch_rows)
        return torch.nn.functional.binary_cross_entropy_with_logits(model.logits(*[f[n] for n in RANK_FEATURES]), labels[batch_rows])

    checkpoints = Checkpoints(tmp_path, {"run": "early"})
    result = fit("student", model, loss, rows, Schedule(10, 256, 5, checkpoints, patience=2), validate=validate)
    assert (result.epochs, result.best_epoch, result.best_score) == (4, 2, 0.70)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, weights[2][name], msg=f"{name} is not epoch 2's")
    again = fit("student", model, loss, rows, Schedule(10, 256, 5, checkpoints, patience=2), validate=validate)
    assert (again.epochs, again.best_epoch) == (4, 2)  # a stopped run resumed trains no more


def test_a_start_no_epoch_beats_is_kept(rows_and_features, tmp_path: Path) -> None:
    """A warm start that training only makes worse on validation comes back unchanged."""
    rows, features, labels = rows_and_features
    torch.manual_seed(1)
    model = StudentRanker(CONFIG)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    scores = iter([0.80, 0.70, 0.75])

    def loss(batch_rows: np.ndarray) -> torch.Tensor:
        f = features(batch_rows)
        return torch.nn.functional.binary_cross_entropy_with_logits(model.logits(*[f[n] for n in RANK_FEATURES]), labels[batch_rows])

    result = fit("student", model, loss, rows, Schedule(10, 256, 5, Checkpoints(tmp_path, {}), patience=2),
                 validate=lambda: next(scores))
    assert (result.epochs, result.best_epoch, result.best_score) == (2, 0, 0.80)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, start[name], msg=f"{name} moved")
