"""Retrieval on held-out users: the ANN channel (user tower + FAISS) against the most-popular baseline.

A user's query is what serving would use: the exported history row (the user's last positives in
training) and the timestamp of the user's first held-out interaction. Items the user met in training
are excluded from every list; the relevant set is the held-out positives the user had not met before.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.features import FeatureTables, assemble_users
from cascade.metrics import ndcg_at_k, recall_at_k
from cascade.recall.popular import popular_items
from cascade.schema import Interactions
from export.eval_scorers import OnnxModel

RECALL_KS = (10, 20, 50, 100, 200, 500)
NDCG_K = 10

RankedList = tuple[np.ndarray, np.ndarray]  # (item ids best first, the channel's scores)


@dataclass(frozen=True)
class HeldOutUsers:
    users: np.ndarray  # int64 [U]
    timestamps: np.ndarray  # int64 [U]: each user's first held-out interaction
    train_items: list[np.ndarray]  # distinct items each user met in training
    relevant: list[set[int]]  # held-out positives not met in training (never empty)

    def __len__(self) -> int:
        return len(self.users)

    def take(self, index: np.ndarray) -> HeldOutUsers:
        return HeldOutUsers(
            self.users[index], self.timestamps[index],
            [self.train_items[i] for i in index], [self.relevant[i] for i in index],
        )


def held_out_users(log: Interactions, train_mask: np.ndarray, n_users: int) -> HeldOutUsers:
    """Every user with at least one held-out positive not met in training (log sorted by user, ts)."""
    bounds = np.searchsorted(log.user, np.arange(n_users + 1))
    users, timestamps, train_items, relevant = [], [], [], []
    for u in range(n_users):
        rows = np.arange(bounds[u], bounds[u + 1])
        train = train_mask[rows]
        seen = np.unique(log.item[rows[train]])
        held = rows[~train]
        rel = set(log.item[held[log.label[held] > 0.5]].tolist()) - set(seen.tolist())
        if rel:
            users.append(u)
            timestamps.append(int(log.ts[held[0]]))
            train_items.append(seen)
            relevant.append(rel)
    return HeldOutUsers(np.array(users, np.int64), np.array(timestamps, np.int64), train_items, relevant)


def sample_users(held: HeldOutUsers, n: int, seed: int) -> HeldOutUsers:
    """A seeded random `n` of the users, in random order (so any prefix is a random subset too)."""
    rng = np.random.default_rng(seed)
    return held.take(rng.permutation(len(held))[:n])


def drop_seen(ids: np.ndarray, scores: np.ndarray, seen: np.ndarray, k: int) -> RankedList:
    keep = (ids >= 0) & ~np.isin(ids, seen)
    return ids[keep][:k].astype(np.int64), scores[keep][:k].astype(np.float32)


def ann_lists(
    tower: OnnxModel, index, tables: FeatureTables, histories: np.ndarray, held: HeldOutUsers, k: int
) -> list[RankedList]:
    """Each user's ANN top-k (inner product with the user-tower embedding), training items excluded."""
    if not len(held):
        return []
    embeddings = tower(assemble_users(tables, held.users, histories[held.users], held.timestamps))
    depth = min(index.ntotal, k + max(len(s) for s in held.train_items))
    scores, ids = index.search(np.ascontiguousarray(embeddings, dtype=np.float32), depth)
    return [drop_seen(ids[i], scores[i], held.train_items[i], k) for i in range(len(held))]


def popular_lists(positives: np.ndarray, held: HeldOutUsers, k: int) -> list[RankedList]:
    """The most-popular list (training positives), each user's training items excluded."""
    if not len(held):
        return []
    ids, scores = popular_items(positives, k + max(len(s) for s in held.train_items))
    return [drop_seen(ids, scores, seen, k) for seen in held.train_items]


def list_metrics(lists: list[RankedList], relevant: list[set[int]], ks: tuple[int, ...] = RECALL_KS) -> dict[str, float]:
    """Recall@K for each K and NDCG@10 of ranked lists against the relevant sets."""
    ranked = [ids for ids, _ in lists]
    return {**{f"recall@{k}": recall_at_k(ranked, relevant, k) for k in ks}, f"ndcg@{NDCG_K}": ndcg_at_k(ranked, relevant, NDCG_K)}
