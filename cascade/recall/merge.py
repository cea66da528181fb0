"""Merge recall channels into one distinct candidate set, remembering which channel brought each item.

Channels come in priority order. An item belongs to the first channel that *takes* it: an item a
channel skipped because its quota was spent is still free for a later channel. That makes the merge
sequential across channels (there are a handful), while the work inside each channel is vectorised.

Item ids index the catalogue, so what is taken is a boolean mask over ids 0..max id (20 kB for
20,000 items): a lookup and a scatter per channel instead of sorting (`np.unique`, `np.isin`).
Channels rarely repeat an item (FAISS, the popular list and item-to-item answer distinct ids), so
a channel is sorted only when its kept prefix turns out to hold a repeat.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Candidates:
    item_ids: np.ndarray  # int64 [n], distinct
    channels: np.ndarray  # int64 [n], index into `channel_names`: the channel that brought the item
    scores: np.ndarray  # float32 [n], that channel's own score for the item
    channel_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.item_ids)

    def take(self, index: np.ndarray) -> "Candidates":
        """Subset and/or reorder the candidates; `channel_names` is kept as it is."""
        return Candidates(
            self.item_ids[index], self.channels[index], self.scores[index], self.channel_names
        )


def _first_occurrences(ids: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct id, in their original order."""
    _, first = np.unique(ids, return_index=True)
    return np.sort(first)


def _checked(name: str, ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    if ids.shape != scores.shape or ids.ndim != 1:
        raise ValueError(
            f"recall channel {name!r}: item_ids {ids.shape} and scores {scores.shape}"
            " must be 1-d and of the same length"
        )
    if len(ids) and ids.min() < 0:
        raise ValueError(f"recall channel {name!r}: negative item ids {ids[ids < 0][:5].tolist()}")
    return ids, scores


def merge_channels(
    channels: list[tuple[str, np.ndarray, np.ndarray]],
    limit: int,
    quotas: dict[str, int] | None = None,
) -> Candidates:
    """Merge (name, item_ids, scores) channels, each sorted best-first, listed in priority order.

    Each channel contributes at most `quotas[name]` items (no entry: unlimited) that no earlier
    channel took, dropping its own duplicates too; the result keeps channel order, then each
    channel's own order, and is cut at `limit`.
    """
    quotas = quotas or {}
    negative = {name: quota for name, quota in quotas.items() if quota < 0}
    if negative:
        raise ValueError(f"recall quotas must be >= 0, got {negative}")
    names = tuple(name for name, _, _ in channels)
    checked = [_checked(name, ids, scores) for name, ids, scores in channels]
    taken = np.zeros(max((int(ids.max()) + 1 for ids, _ in checked if len(ids)), default=0), dtype=bool)
    n_taken = 0
    kept: list[np.ndarray] = []
    room = max(limit, 0)
    for name, (ids, _) in zip(names, checked):
        want = min(quotas.get(name, room), room)
        fresh = np.flatnonzero(~taken[ids])  # not taken by an earlier channel
        keep = fresh[:want]
        taken[ids[keep]] = True
        if np.count_nonzero(taken) != n_taken + len(keep):  # a repeat within the kept prefix
            taken[ids[keep]] = False
            keep = fresh[_first_occurrences(ids[fresh])][:want]
            taken[ids[keep]] = True
        n_taken += len(keep)
        room -= len(keep)
        kept.append(keep)
    if not kept:
        return Candidates(
            np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32), names
        )
    return Candidates(
        np.concatenate([ids[keep] for (ids, _), keep in zip(checked, kept)]),
        np.repeat(np.arange(len(kept), dtype=np.int64), [len(keep) for keep in kept]),
        np.concatenate([scores[keep] for (_, scores), keep in zip(checked, kept)]),
        names,
    )
