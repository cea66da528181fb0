"""Behaviour sequences: each row's last L positive items strictly before it, most recent last.

Training asks for the history of arbitrary rows of the log; serving asks for each user's latest
history. Both read the same index, so the sequence a model trains on is the one it is served.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.schema import Interactions

PAD_ITEM = -1


@dataclass(frozen=True)
class HistoryIndex:
    positives: np.ndarray  # int64 [P]: positive items, grouped by user, in time order
    start: np.ndarray  # int64 [N]: offset in `positives` of the row's user's first positive
    before: np.ndarray  # int64 [N]: the user's positives strictly before this row

    @staticmethod
    def build(log: Interactions) -> "HistoryIndex":
        """`log` must be sorted by (user, ts), as `Interactions.sorted` leaves it."""
        is_pos = log.label > 0.5
        cum = np.cumsum(is_pos) - is_pos  # positives strictly before each row, over the whole log
        new_user = np.r_[True, log.user[1:] != log.user[:-1]]
        user_first_row = np.maximum.accumulate(np.where(new_user, np.arange(len(log)), 0))
        start = cum[user_first_row]
        return HistoryIndex(log.item[is_pos].astype(np.int64), start, cum - start)

    def rows(self, index: np.ndarray, length: int) -> np.ndarray:
        """Histories of the given rows, int64 [len(index), length], left-padded with PAD_ITEM."""
        offset = self.before[index, None] - length + np.arange(length)[None, :]
        valid = offset >= 0
        flat = np.where(valid, self.start[index, None] + offset, 0)
        return np.where(valid, self.positives[flat] if len(self.positives) else PAD_ITEM, PAD_ITEM)


def latest_histories(log: Interactions, n_users: int, length: int) -> np.ndarray:
    """Each user's last `length` positives over the whole log, int64 [n_users, length]."""
    out = np.full((n_users, length), PAD_ITEM, dtype=np.int64)
    pos = log.label > 0.5
    users, items = log.user[pos], log.item[pos]
    if len(users) == 0:
        return out
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    for s, e in zip(starts, ends):
        tail = items[max(s, e - length) : e]
        out[users[s], length - len(tail) :] = tail
    return out


def pad_history(history: np.ndarray, length: int) -> np.ndarray:
    """Keep the last `length` items of one user's history, left-padding with PAD_ITEM."""
    tail = np.asarray(history, dtype=np.int64)[-length:] if length else np.empty(0, np.int64)
    return np.concatenate([np.full(length - len(tail), PAD_ITEM, dtype=np.int64), tail])


def merge_live_history(exported: np.ndarray | None, live_clicks: np.ndarray, length: int) -> np.ndarray:
    """The history to serve: the exported sequence, then the live clicks it does not already hold.

    `live_clicks` is in click order (most recent last). Padding is dropped from `exported`; a live
    click already in it keeps its place there; one repeated among the live clicks keeps its latest place. The result is
    the last `length` items, left-padded with PAD_ITEM. A cold-start user (`exported` None) gets the
    live clicks alone.
    """
    known = np.empty(0, np.int64) if exported is None else np.asarray(exported, dtype=np.int64)
    known = known[known != PAD_ITEM]
    live = np.asarray(live_clicks, dtype=np.int64)
    live = live[live != PAD_ITEM]
    if not len(live):  # most requests: nothing clicked since the export
        return pad_history(known, length)
    _, last_from_end = np.unique(live[::-1], return_index=True)
    live = live[np.sort(len(live) - 1 - last_from_end)]  # repeated live clicks: keep the latest
    fresh = live[~np.isin(live, known)]
    return pad_history(np.concatenate([known, fresh]), length)
