"""Train the pre-ranker, the ranker and the two-tower retrieval model on the training split."""
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
from cascade.models.scorers import PreRanker, Ranker
from cascade.models.two_tower import TwoTower
from cascade.schema import Interactions
from cascade.specs import PRERANK_FEATURES, RANK_FEATURES, USER_TOWER_FEATURES


@dataclass
class Trained:
    prerank: PreRanker
    rank: Ranker
    two_tower: TwoTower
    metrics: dict[str, float]
    seconds: dict[str, float]


class RowFeatures:
    """Assembles feature tensors for rows of the (user, ts)-sorted log, with their histories."""

    def __init__(self, tables: FeatureTables, log: Interactions) -> None:
        self.tables, self.log = tables, log
        self.history = HistoryIndex.build(log)

    def __call__(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        log = self.log
        hist = self.history.rows(rows, self.tables.config.history_len)
        arrays = assemble(self.tables, log.user[rows], log.item[rows], hist, log.ts[rows])
        return {k: torch.from_numpy(v) for k, v in arrays.items()}


def _batches(rows: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    rows = rng.permutation(rows) if rng is not None else rows
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def fit(
    name: str,
    model: torch.nn.Module,
    loss_fn: Callable[[np.ndarray], torch.Tensor],
    rows: np.ndarray,
    epochs: int,
    batch_size: int,
    seed: int,
    lr: float = 3e-3,
) -> float:
    """Adam over shuffled mini-batches of `rows`, with a progress bar; returns seconds taken."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        bar = tqdm(_batches(rows, batch_size, rng), desc=f"{name} epoch {epoch + 1}/{epochs}", unit="batch", leave=False, mininterval=1.0)
        for batch in bar:
            loss = loss_fn(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    model.eval()
    return time.perf_counter() - start


@torch.no_grad()
def predict(model: torch.nn.Module, names: tuple[str, ...], features: RowFeatures, rows: np.ndarray) -> np.ndarray:
    model.eval()
    out = [model(*[f[n] for n in names]).numpy() for f in map(features, _batches(rows, 8192, None))]
    return np.concatenate(out) if out else np.empty(0, np.float32)


def train_all(
    tables: FeatureTables, log: Interactions, train_mask: np.ndarray, epochs: int, batch_size: int, seed: int
) -> Trained:
    torch.manual_seed(seed)
    cfg = tables.config
    features = RowFeatures(tables, log)
    train_rows, test_rows = np.flatnonzero(train_mask), np.flatnonzero(~train_mask)
    labels = torch.from_numpy(log.label)
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def scorer_loss(model: torch.nn.Module, names: tuple[str, ...]) -> Callable[[np.ndarray], torch.Tensor]:
        def loss(rows: np.ndarray) -> torch.Tensor:
            f = features(rows)
            return bce(model.logits(*[f[n] for n in names]), labels[rows])

        return loss

    prerank, rank, two_tower = PreRanker(cfg), Ranker(cfg), TwoTower(cfg)
    seconds = {
        "prerank": fit("prerank", prerank, scorer_loss(prerank, PRERANK_FEATURES), train_rows, epochs, batch_size, seed),
        "rank": fit("rank", rank, scorer_loss(rank, RANK_FEATURES), train_rows, epochs, batch_size, seed),
    }
    log_q = torch.from_numpy(np.log((tables.item_positives + 1.0) / (tables.item_positives + 1.0).sum()).astype(np.float32))

    def retrieval_loss(rows: np.ndarray) -> torch.Tensor:
        f = features(rows)
        user = {n: f[n] for n in USER_TOWER_FEATURES}
        item = {n: f[n] for n in ("item_id", "item_cat", "item_num")}
        return two_tower.in_batch_loss(user, item, log_q[torch.from_numpy(log.item[rows])])

    positive_rows = train_rows[log.label[train_rows] > 0.5]
    seconds["two_tower"] = fit("two_tower", two_tower, retrieval_loss, positive_rows, epochs, batch_size, seed)
    metrics = {
        "prerank_auc": roc_auc(log.label[test_rows], predict(prerank, PRERANK_FEATURES, features, test_rows)),
        "rank_auc": roc_auc(log.label[test_rows], predict(rank, RANK_FEATURES, features, test_rows)),
    }
    return Trained(prerank, rank, two_tower, metrics, seconds)
