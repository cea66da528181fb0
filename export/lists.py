"""Listwise distillation: the student learns the teacher's order of the candidates serving hands it.

Pointwise distillation teaches the student the teacher's probability of each logged row. What the
funnel needs is the teacher's order of a user's recall candidates, mostly items the log never showed
that user: there the pointwise student's top 10 over the synthetic catalogue reached a graded NDCG@10
of 0.83 against the teacher's. Each list here holds, for one training row's user side, items drawn
from that user's two-tower top `depth` (the ANN channel's candidates) and from the whole catalogue;
the loss is the KL divergence from the teacher's softmax over the list to the student's, at a
temperature (ListNet). Probes on the synthetic export's trained student (30 held-out users outside
the report's funnel users, their whole catalogue top 10 graded by the teacher; 32 lists of 100 a
step, temperature 0.5): from 0.830, list weight 1 gave 0.887 after 1,200 steps and 0.895 after
2,000; weight 3 gave 0.905 after 1,200 (the default); weight 10, 0.906. Test AUC rose from 0.748
to 0.751 in each. Pointwise distillation on the same candidates (one epoch) had moved it by 0.008.

Uniform draws from a top 1,000 seldom set the items the student ranks best side by side, and its
served top 10 comes out of those. So a third of each list (HARD_SHARE) is the student's own best of
the user's two-tower top, scored afresh each step. On the synthetic export (same teacher and seed)
rank's order of the served candidates went 0.904 -> 0.914 against the teacher's, the funnel's top 10
0.893 -> 0.901; a student twice as wide instead (3.4x the FLOPs) gave 0.905 and 0.897.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from cascade.features import FeatureTables, assemble_items
from cascade.models.two_tower import TwoTower
from cascade.specs import ITEM_SIDE, USER_TOWER_FEATURES
from export.faiss_index import item_embeddings

Batch = dict[str, torch.Tensor]
ANN_SHARE = 0.64  # of a list, the items drawn from the user's two-tower top `depth`; the rest from the catalogue
HARD_SHARE = 0.32  # of a list, the items the student itself ranks best in that top `depth` (where its top 10 is chosen)
Scorer = Callable[[Batch, np.ndarray], np.ndarray]  # (rows' tensors, [B, K] item ids) -> [B, K] scores


@dataclass(frozen=True)
class ListDistillation:
    rows: int  # rows of a step that each get a list (0: no listwise phase)
    size: int  # items per list
    temperature: float
    weight: float  # of the list loss beside the pointwise distillation loss
    steps: int  # steps per epoch
    epochs: int  # at most: the phase keeps its best epoch by `graded_ndcg_within` on validation lists
    depth: int  # the two-tower top the lists draw from: the ANN channel's (CASCADE_RECALL_ANN_K)


def list_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) between the softmaxes of [B, M] logits over each list at `temperature`,
    mean over lists, scaled by T^2 (its gradient keeps its size across temperatures)."""
    return F.kl_div(F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1),
                    reduction="batchmean", log_target=True) * temperature * temperature


def _dcg(gains: np.ndarray) -> np.ndarray:
    return (gains / np.log2(np.arange(2, gains.shape[1] + 2))).sum(axis=1)


def graded_ndcg_within(scores: np.ndarray, gains: np.ndarray, k: int = 10) -> float:
    """Mean over lists ([B, M]) of the NDCG@k of the order `scores` give, graded by `gains` (the
    teacher's probabilities): 1 when the top k are the teacher's top k."""
    rows = np.arange(len(scores))[:, None]
    ranked = gains[rows, np.argsort(-scores, axis=1, kind="stable")[:, :k]]
    ideal = -np.sort(-gains, axis=1)[:, :k]
    return float(np.mean(_dcg(ranked) / _dcg(ideal)))


class CandidateLists:
    """Per training row, a list of items as serving would hand the ranker: from the user's two-tower
    top `depth`, topped up from the whole catalogue. Given a scorer (the student), the list leads with
    the HARD_SHARE of items it ranks best in that top: the competition its served top 10 comes out of,
    which uniform draws from a top 1,000 seldom put side by side."""

    def __init__(self, two_tower: TwoTower, tables: FeatureTables, depth: int, size: int) -> None:
        self.two_tower, self.tables = two_tower, tables
        self.depth, self.size = min(depth, tables.n_items), size
        self.from_ann = min(int(round(ANN_SHARE * size)), self.depth)
        self.hard = min(int(round(HARD_SHARE * size)), self.from_ann)
        self.item_vectors = torch.from_numpy(item_embeddings(two_tower, tables))  # what the item index holds

    def draw(self, batch: Batch, rng: np.random.Generator, scorer: Scorer | None = None) -> np.ndarray:
        """[B, size] item ids for the rows of `batch` (assembled row tensors)."""
        with torch.no_grad():
            users = self.two_tower.user_tower(*[batch[n] for n in USER_TOWER_FEATURES])
            top = torch.topk(users @ self.item_vectors.T, self.depth, dim=1).indices.numpy()
        hard = top[:, :0]
        if scorer is not None and self.hard:
            order = np.argsort(-scorer(batch, top), axis=1, kind="stable")
            hard, top = np.take_along_axis(top, order[:, :self.hard], 1), np.take_along_axis(top, order[:, self.hard:], 1)
        ann = np.stack([rng.choice(row, self.from_ann - hard.shape[1], replace=False) for row in top])
        catalogue = rng.integers(0, self.tables.n_items, (len(top), self.size - self.from_ann))
        return np.concatenate([hard, ann, catalogue], axis=1)

    def features(self, batch: Batch, items: np.ndarray) -> Batch:
        """Row tensors for each row's list: its user side repeated, the items' side as serving knows it."""
        n = items.shape[1]
        side = {k: torch.from_numpy(v) for k, v in assemble_items(self.tables, items.reshape(-1)).items()}
        return {**{k: v.repeat_interleave(n, dim=0) for k, v in batch.items() if k not in ITEM_SIDE}, **side}
