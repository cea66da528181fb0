"""Listwise distillation (`export.lists`, `export.train.distil_lists`): the loss, the agreement
measure, the candidate lists, and a phase that must raise the student's agreement with the
teacher's order of candidate lists (it fails if the student stops learning from the lists)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cascade.features import FeatureConfig, build_tables
from cascade.models.scorers import StudentRanker
from cascade.models.teacher import TeacherRanker
from cascade.models.two_tower import TwoTower
from export.checkpoints import Checkpoints
from export.distill import DistillWeights
from export.lists import CandidateLists, ListDistillation, graded_ndcg_within, list_kl
from export.synthetic import generate
from export.train import RowFeatures, Schedule, distil_lists

CONFIG = FeatureConfig(history_len=10, item_buckets=1_009, category_buckets=101, user_field_buckets=101, user_id_buckets=211)


@pytest.fixture(scope="module")
def world():
    data = generate(n_users=60, n_items=300, n_interactions=3_000, n_categories=6, seed=3)
    tables = build_tables(data, data.interactions, CONFIG)
    torch.manual_seed(0)
    two_tower = TwoTower(CONFIG).eval()
    return data, tables, RowFeatures(tables, data.interactions), two_tower


def test_list_kl_is_zero_for_the_same_order_up_to_a_shift_and_positive_otherwise() -> None:
    t = torch.tensor([[3.0, 1.0, -2.0, 0.5], [0.0, 0.1, 0.2, 0.3]])
    assert list_kl(t + 7.0, t, 0.5).item() == pytest.approx(0.0, abs=1e-6)  # a softmax ignores a constant
    assert list_kl(-t, t, 0.5).item() > 0.5
    # a lower temperature weighs the teacher's top more: swapping its top two against swapping its
    # bottom two costs over 100x at 0.5, under 3x at 2
    top, bottom = t[:1, [1, 0, 2, 3]], t[:1, [0, 1, 3, 2]]
    ratio = {T: list_kl(top, t[:1], T).item() / list_kl(bottom, t[:1], T).item() for T in (0.5, 2.0)}
    assert ratio[0.5] > 100 and ratio[2.0] < 3


def test_graded_ndcg_within_is_one_for_the_teachers_order_and_graded_below() -> None:
    gains = np.array([[0.9, 0.1, 0.5, 0.3]])
    assert graded_ndcg_within(gains * 2 - 1, gains, k=2) == pytest.approx(1.0)
    # top 2 by these scores: items 1 and 3 (gains 0.1, 0.3) against the ideal 0.9, 0.5
    worse = graded_ndcg_within(np.array([[0.0, 1.0, 0.0, 0.5]]), gains, k=2)
    assert worse == pytest.approx((0.1 + 0.3 / np.log2(3)) / (0.9 + 0.5 / np.log2(3)))


def _two_tower_top(two_tower, lists: CandidateLists, batch) -> np.ndarray:
    """[B, depth] each row's two-tower top, computed here independently of `CandidateLists.draw`."""
    with torch.no_grad():
        users = two_tower.user_tower(batch["user_cat"], batch["user_num"], batch["hist_item"], batch["hist_cat"])
        return torch.topk(users @ lists.item_vectors.T, lists.depth, dim=1).indices.numpy()


def test_candidate_lists_draw_from_the_users_two_tower_top_and_the_catalogue(world) -> None:
    data, tables, features, two_tower = world
    lists = CandidateLists(two_tower, tables, depth=30, size=20)
    batch = features(np.arange(8))
    items = lists.draw(batch, np.random.default_rng(0))
    assert items.shape == (8, 20) and items.min() >= 0 and items.max() < tables.n_items
    top = _two_tower_top(two_tower, lists, batch)
    for row in range(8):  # the ANN share (64 % of 20: 13) from the row's own top 30, no repeats
        ann = items[row, : lists.from_ann]
        assert lists.from_ann == 13 and set(ann) <= set(top[row]) and len(set(ann)) == 13
    rows = lists.features(batch, items)
    assert rows["item_id"].shape == (160,) and rows["hist_item"].shape == (160, CONFIG.history_len)
    assert torch.equal(rows["user_cat"][20:40], batch["user_cat"][1:2].expand(20, -1))  # row 1's user side, 20 times


def test_a_scorer_puts_its_best_of_the_two_tower_top_first(world) -> None:
    """With a scorer (the student), the list leads with the items it ranks best in the user's
    two-tower top; the rest of the ANN share comes from the remainder of that top, no repeats."""
    data, tables, features, two_tower = world
    lists = CandidateLists(two_tower, tables, depth=30, size=20)
    batch = features(np.arange(8))
    items = lists.draw(batch, np.random.default_rng(0), lambda rows, top: -top.astype(np.float64))  # best: lowest id
    top = _two_tower_top(two_tower, lists, batch)
    assert lists.hard == 6
    for row in range(8):
        assert items[row, : lists.hard].tolist() == sorted(top[row])[: lists.hard]
        ann = items[row, : lists.from_ann]
        assert set(ann) <= set(top[row]) and len(set(ann)) == lists.from_ann


def _phase(world, tmp_path: Path, weight: float) -> list[float]:
    """The listwise phase's validation scores (start first) for a fresh student against a fixed teacher."""
    data, tables, features, two_tower = world
    torch.manual_seed(1)
    teacher, student = TeacherRanker(CONFIG, dim=8).eval(), StudentRanker(CONFIG)
    with torch.no_grad():  # an untrained teacher says ~0.5 everywhere; spread its logits to have an order to learn
        teacher.out.weight.mul_(30.0)
    rows = np.arange(len(data.interactions))
    lists = ListDistillation(rows=16, size=24, temperature=0.5, weight=weight, steps=40, epochs=3, depth=60)
    result = distil_lists(student, teacher, CandidateLists(two_tower, tables, lists.depth, lists.size), features,
                          rows[:2_400], rows[2_400:], torch.from_numpy(data.interactions.label), DistillWeights(),
                          lists, Schedule(3, 16, 0, Checkpoints(tmp_path / str(weight), {}), patience=3))
    assert len(result.scores) == 4 and result.best_score == max(result.scores)
    return result.scores


def test_the_listwise_phase_brings_the_students_order_of_lists_toward_the_teachers(world, tmp_path: Path) -> None:
    """Against the same steps of pointwise distillation alone (list weight 0: 0.48 -> 0.60 here), the
    list loss at the export's weight takes the agreement further (0.48 -> 0.62; weight 1: 0.61). The
    validation lists lead with the student's own best of the two-tower top, where its errors are."""
    listwise, pointwise = _phase(world, tmp_path, 3.0), _phase(world, tmp_path, 0.0)
    assert listwise[0] == pointwise[0]
    assert max(listwise) > listwise[0] + 0.1 and max(listwise) > max(pointwise) + 0.02, (listwise, pointwise)
