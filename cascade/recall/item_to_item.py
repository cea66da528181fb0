"""The item-to-item recall channel: co-occurrence neighbours built offline, looked up per request.

Offline (`build_item_to_item`): two items co-occur when the same user clicked both within a window
of `window` consecutive positives. Counts are normalised by sqrt(pop_i * pop_j) (cosine on the
binary co-click vectors, so blockbusters do not neighbour everything) and each item keeps its
`top_m` best neighbours: `neighbours int64 [n_items, M]` (-1 padded) and `weights float32 [n_items, M]`.

Online (`item_to_item_candidates`): the user's last `recent` history items vote for their
neighbours with their weight times `decay ** age` (age 0 = the most recent item); items already in
the history are excluded; the top-k by summed vote come back best first (ties by id).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

NO_NEIGHBOUR = -1


@dataclass(frozen=True)
class ItemToItemIndex:
    neighbours: np.ndarray  # int64 [n_items, M], -1 padded
    weights: np.ndarray  # float32 [n_items, M], 0 where padded

    @property
    def n_items(self) -> int:
        return int(self.neighbours.shape[0])

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, neighbours=self.neighbours, weights=self.weights)

    @staticmethod
    def load(path: Path) -> "ItemToItemIndex":
        with np.load(path, allow_pickle=False) as data:
            index = ItemToItemIndex(data["neighbours"].astype(np.int64), data["weights"].astype(np.float32))
        if index.neighbours.shape != index.weights.shape or index.neighbours.ndim != 2:
            raise ValueError(f"{path}: neighbours {index.neighbours.shape} and weights {index.weights.shape} differ")
        return index


def build_item_to_item(
    user: np.ndarray, item: np.ndarray, n_items: int, window: int = 5, top_m: int = 50
) -> ItemToItemIndex:
    """Co-occurrence neighbours from positives sorted by (user, time) (`user`, `item`: int64 [N])."""
    if window < 2 or top_m < 1:
        raise ValueError(f"item-to-item needs window >= 2 and top_m >= 1, got window={window}, top_m={top_m}")
    user, item = np.asarray(user, np.int64), np.asarray(item, np.int64)
    src, dst = [], []
    for gap in range(1, window):  # pairs `gap` positives apart, same user, both directions
        same = user[gap:] == user[:-gap]
        a, b = item[:-gap][same], item[gap:][same]
        distinct = a != b
        src += [a[distinct], b[distinct]]
        dst += [b[distinct], a[distinct]]
    neighbours = np.full((n_items, top_m), NO_NEIGHBOUR, np.int64)
    weights = np.zeros((n_items, top_m), np.float32)
    if not src or sum(len(s) for s in src) == 0:
        return ItemToItemIndex(neighbours, weights)
    keys, counts = np.unique(np.concatenate(src) * n_items + np.concatenate(dst), return_counts=True)
    a, b = keys // n_items, keys % n_items
    popularity = np.bincount(item, minlength=n_items).astype(np.float64)
    score = counts / np.sqrt(popularity[a] * popularity[b])
    order = np.lexsort((b, -score, a))  # by item, then best neighbour first, ties by id
    a, b, score = a[order], b[order], score[order]
    starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
    rank = np.arange(len(a)) - np.repeat(starts, np.diff(np.r_[starts, len(a)]))
    keep = rank < top_m
    neighbours[a[keep], rank[keep]] = b[keep]
    weights[a[keep], rank[keep]] = score[keep]
    return ItemToItemIndex(neighbours, weights)


def item_to_item_candidates(
    index: ItemToItemIndex, history: np.ndarray, k: int, recent: int = 5, decay: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (item ids, scores) for a history (most recent last, -1 padded); empty without history."""
    history = np.asarray(history, np.int64)
    seen = history[(history >= 0) & (history < index.n_items)]
    seeds = seen[-recent:][::-1] if recent > 0 else seen[:0]  # most recent first: age 0, 1, ...
    if len(seeds) == 0 or k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    ids = index.neighbours[seeds]
    votes = index.weights[seeds] * (decay ** np.arange(len(seeds), dtype=np.float32))[:, None]
    in_history = np.zeros(index.n_items, bool)  # a catalogue-long mask: 4 us, a broadcast against the history 20
    in_history[seen] = True
    valid = (ids >= 0) & ~in_history[ids]  # a padding -1 reads the last item's flag; `ids >= 0` drops it anyway
    ids, votes = ids[valid], votes[valid]
    if len(ids) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    unique, inverse = np.unique(ids, return_inverse=True)
    scores = np.bincount(inverse, weights=votes).astype(np.float32)
    order = np.lexsort((unique, -scores))[:k]
    return unique[order], scores[order]
