"""Train the suite: teacher ranker -> distilled student ranker -> pre-ranker distilled from the
student -> two-tower retrieval. Seeded, resumable per epoch, with progress bars."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from cascade.features import FeatureTables, assemble
from cascade.history import HistoryIndex
from cascade.metrics import roc_auc
from cascade.models.scorers import PreRanker, StudentRanker
from cascade.models.teacher import TeacherRanker
from cascade.models.two_tower import TwoTower
from cascade.schema import Interactions
from cascade.specs import PRERANK_FEATURES, RANK_FEATURES, USER_TOWER_FEATURES
from export.checkpoints import Checkpoints
from export.distill import DistillWeights, distillation_loss

Batch = dict[str, torch.Tensor]


@dataclass
class Trained:
    teacher: TeacherRanker
    student: StudentRanker
    prerank: PreRanker
    two_tower: TwoTower
    metrics: dict[str, float]
    seconds: dict[str, float]


class RowFeatures:
    """Assembles feature tensors for rows of the (user, ts)-sorted log, with their histories."""

    def __init__(self, tables: FeatureTables, log: Interactions) -> None:
        self.tables, self.log = tables, log
        self.history = HistoryIndex.build(log)

    def __call__(self, rows: np.ndarray) -> Batch:
        log = self.log
        hist = self.history.rows(rows, self.tables.config.history_len)
        arrays = assemble(self.tables, log.user[rows], log.item[rows], hist, log.ts[rows])
        return {k: torch.from_numpy(v) for k, v in arrays.items()}


def _batches(rows: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    rows = rng.permutation(rows) if rng is not None else rows
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


@dataclass(frozen=True)
class Schedule:
    epochs: int
    batch_size: int
    seed: int
    checkpoints: Checkpoints


def fit(name: str, model: torch.nn.Module, loss_fn: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray,
        schedule: Schedule, lr: float = 3e-3, extra: tuple[torch.nn.Module, ...] = ()) -> float:
    """Adam over shuffled mini-batches of `rows` with a progress bar; resumes from the last
    finished epoch of this run. `extra` modules (e.g. a hint regressor) train alongside.
    Each epoch's shuffle is seeded by (seed, epoch), so a resumed run sees the same batches."""
    params = [p for m in (model, *extra) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    holder = torch.nn.ModuleList([model, *extra])
    done = schedule.checkpoints.restore(name, holder, opt)
    if done:
        print(f"{name}: resumed after epoch {done}/{schedule.epochs}")
    start = time.perf_counter()
    holder.train()
    for epoch in range(done, schedule.epochs):
        rng = np.random.default_rng([schedule.seed, epoch])
        bar = tqdm(_batches(rows, schedule.batch_size, rng), desc=f"{name} epoch {epoch + 1}/{schedule.epochs}",
                   unit="batch", leave=False, mininterval=1.0)
        for batch in bar:
            loss = loss_fn(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        schedule.checkpoints.save(name, holder, opt, epoch + 1)
    holder.eval()
    return time.perf_counter() - start


@torch.no_grad()
def predict_logits(model: torch.nn.Module, names: tuple[str, ...], features: RowFeatures, rows: np.ndarray) -> np.ndarray:
    model.eval()
    out = [model.logits(*[f[n] for n in names]).numpy() for f in map(features, _batches(rows, 8192, None))]
    return np.concatenate(out) if out else np.empty(0, np.float32)


def train_all(tables: FeatureTables, log: Interactions, train_mask: np.ndarray, schedules: dict[str, Schedule],
              weights: DistillWeights) -> Trained:
    """`schedules` names one Schedule per model: teacher, student, prerank, two_tower."""
    cfg = tables.config
    features = RowFeatures(tables, log)
    train_rows, test_rows = np.flatnonzero(train_mask), np.flatnonzero(~train_mask)
    labels = torch.from_numpy(log.label)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    seconds: dict[str, float] = {}

    torch.manual_seed(schedules["teacher"].seed)
    teacher = TeacherRanker(cfg)

    def teacher_loss(rows: np.ndarray) -> torch.Tensor:
        f = features(rows)
        return bce(teacher.logits(*[f[n] for n in RANK_FEATURES]), labels[rows])

    seconds["teacher"] = fit("teacher", teacher, teacher_loss, train_rows, schedules["teacher"], lr=2e-3)

    torch.manual_seed(schedules["student"].seed + 1)
    student = StudentRanker(cfg)
    regressor = torch.nn.Linear(student.hint_dim, teacher.hint_dim)  # training only, never exported

    def student_loss(rows: np.ndarray) -> torch.Tensor:
        f = features(rows)
        x = [f[n] for n in RANK_FEATURES]
        with torch.no_grad():
            t_hidden = teacher.hidden(*x)
            t_logits = teacher.out(t_hidden).squeeze(1)
        s_hidden = student.hidden(*x)
        s_logits = student.out(s_hidden).squeeze(1)
        return distillation_loss(s_logits, t_logits, labels[rows], weights, regressor(s_hidden), t_hidden)

    seconds["rank"] = fit("student", student, student_loss, train_rows, schedules["student"], extra=(regressor,))

    torch.manual_seed(schedules["prerank"].seed + 2)
    prerank = PreRanker(cfg)
    prerank_weights = DistillWeights(weights.temperature, weights.label, hint=0.0)

    def prerank_loss(rows: np.ndarray) -> torch.Tensor:
        f = features(rows)
        with torch.no_grad():
            s_logits = student.logits(*[f[n] for n in RANK_FEATURES])
        return distillation_loss(prerank.logits(*[f[n] for n in PRERANK_FEATURES]), s_logits, labels[rows], prerank_weights)

    seconds["prerank"] = fit("prerank", prerank, prerank_loss, train_rows, schedules["prerank"])

    torch.manual_seed(schedules["two_tower"].seed + 3)
    two_tower = TwoTower(cfg)
    log_q = torch.from_numpy(np.log((tables.item_positives + 1.0) / (tables.item_positives + 1.0).sum()).astype(np.float32))

    def retrieval_loss(rows: np.ndarray) -> torch.Tensor:
        f = features(rows)
        user = {n: f[n] for n in USER_TOWER_FEATURES}
        item = {n: f[n] for n in ("item_id", "item_cat", "item_num")}
        return two_tower.in_batch_loss(user, item, log_q[torch.from_numpy(log.item[rows])])

    positive_rows = train_rows[log.label[train_rows] > 0.5]
    seconds["two_tower"] = fit("two_tower", two_tower, retrieval_loss, positive_rows, schedules["two_tower"])

    y = log.label[test_rows]
    scored = (("teacher", teacher, RANK_FEATURES), ("rank", student, RANK_FEATURES), ("prerank", prerank, PRERANK_FEATURES))
    metrics = {f"{name}_auc": roc_auc(y, predict_logits(model, names, features, test_rows)) for name, model, names in scored}
    return Trained(teacher, student, prerank, two_tower, metrics, seconds)
