"""The teacher ensemble: teachers trained under their own seeds, scoring with the mean of their logits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cascade.features import FeatureConfig, random_rows
from cascade.models.teacher import TeacherEnsemble, TeacherRanker
from cascade.specs import RANK_FEATURES, teacher_spec
from export.checkpoints import Checkpoints
from export.onnx_export import check_parity, export_onnx
from export.train import MEMBER_SEED_STRIDE, Schedule, member_schedule

CFG = FeatureConfig(history_len=6, item_buckets=97, category_buckets=11, user_field_buckets=13)


def members(n: int) -> list[TeacherRanker]:
    """`n` teachers, each with its wide part set to random values (a fresh one's is zero)."""
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        member = TeacherRanker(CFG, dim=8).eval()
        with torch.no_grad():
            for table in (member.wide.item, member.wide.category):
                table.weight.normal_()
        out.append(member)
    return out


def tensors(n: int = 32) -> list[torch.Tensor]:
    rows = random_rows(CFG, n, np.random.default_rng(0))
    return [torch.from_numpy(rows[name]) for name in RANK_FEATURES]


def test_the_ensemble_scores_the_mean_of_its_members_logits() -> None:
    parts, x = members(3), tensors()
    ensemble = TeacherEnsemble(parts).eval()
    with torch.no_grad():
        each = torch.stack([m.logits(*x) for m in parts])
        hidden, logits = ensemble.hidden_and_logits(*x)  # what distillation reads: one pass, the same logit
        torch.testing.assert_close(logits, each.mean(dim=0), rtol=0, atol=1e-5)
        torch.testing.assert_close(ensemble.logits(*x), each.mean(dim=0), rtol=0, atol=1e-5)
        torch.testing.assert_close(ensemble(*x), torch.sigmoid(each.mean(dim=0)), rtol=0, atol=1e-6)
        # the hint the student regresses on: every member's last hidden layer, side by side
        assert hidden.shape == (32, 3 * parts[0].hint_dim) and ensemble.hint_dim == 3 * parts[0].hint_dim
    assert not any(p.requires_grad for p in ensemble.parameters())  # assembled from trained members


def test_the_ensemble_exports_with_the_teachers_spec(tmp_path: Path) -> None:
    ensemble = TeacherEnsemble(members(2)).eval()
    rows = random_rows(CFG, 16, np.random.default_rng(1))
    spec, path = teacher_spec(CFG.history_len), tmp_path / "teacher.onnx"
    export_onnx(ensemble, spec, rows, path)
    assert check_parity(ensemble, spec, rows, path) <= 1e-5


def test_each_member_trains_under_its_own_seed_and_checkpoint(tmp_path: Path) -> None:
    schedule = Schedule(epochs=3, batch_size=64, seed=7, checkpoints=Checkpoints(tmp_path, {}))
    named = [member_schedule(schedule, k) for k in range(3)]
    assert [name for name, _ in named] == ["teacher", "teacher_2", "teacher_3"]  # the first keeps a lone teacher's name
    assert [s.seed for _, s in named] == [7, 7 + MEMBER_SEED_STRIDE, 7 + 2 * MEMBER_SEED_STRIDE]
    assert all(s.epochs == 3 and s.batch_size == 64 for _, s in named)


def test_the_wide_part_learns_which_items_are_liked() -> None:
    """The labels depend on the item alone (items 1-20 liked, the rest not): trained briefly, the
    teacher's per-item biases put every liked item above every other, and its logits follow."""
    torch.manual_seed(0)
    teacher = TeacherRanker(CFG, dim=8)
    with torch.no_grad():
        assert torch.count_nonzero(teacher.bias(*tensors()[2:4])) == 0  # a fresh wide part adds nothing
    rows = random_rows(CFG, 2_048, np.random.default_rng(2))
    rows["item_id"] = np.random.default_rng(3).integers(1, CFG.item_buckets, size=2_048)
    x = [torch.from_numpy(rows[name]) for name in RANK_FEATURES]
    labels = torch.from_numpy((rows["item_id"] <= 20).astype(np.float32))
    opt = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    for _ in range(60):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(teacher.logits(*x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    bias = teacher.wide.item.weight.detach().squeeze(1)
    assert bias[1:21].min() > bias[21:].max()
    with torch.no_grad():
        scores = teacher.logits(*x).numpy()
    assert scores[labels.numpy() > 0.5].mean() > scores[labels.numpy() < 0.5].mean() + 2.0
