"""Behaviour sequences: each row's last L events strictly before it in time, most recent last.

A sequence holds every event, not only positives: a positive as its item id, any other event
(an impression not clicked, a rating below 4) as `NEGATIVE_BASE - item` (-2 - item), padding as
`PAD_ITEM` (-1), so one int64 array carries both through the request path unchanged
(`decode_events` splits them). Events in the row's own second are not before it.

Training asks for the history of arbitrary rows of the log; serving asks for each user's latest
history. Both read the same encoding, so the sequence a model trains on is the one it is served.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.causal import earlier_rows
from cascade.schema import Interactions

PAD_ITEM = -1
NEGATIVE_BASE = -2  # a non-positive event of item i is NEGATIVE_BASE - i


def encode_events(items: np.ndarray, positive: np.ndarray) -> np.ndarray:
    items = np.asarray(items, np.int64)
    return np.where(positive, items, NEGATIVE_BASE - items)


def decode_events(history: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items, positive, padded) of an encoded history; a padded slot's item is 0."""
    history = np.asarray(history, np.int64)
    padded = history == PAD_ITEM
    negative = history <= NEGATIVE_BASE
    items = np.where(negative, NEGATIVE_BASE - history, np.where(padded, 0, history))
    return items, ~negative & ~padded, padded


def positives_of(history: np.ndarray) -> np.ndarray:
    """The positive items of an encoded history, in order."""
    history = np.asarray(history, np.int64)
    return history[history >= 0]


@dataclass(frozen=True)
class HistoryIndex:
    events: np.ndarray  # int64 [N]: every row's event, encoded, in log order (grouped by user, in time order)
    start: np.ndarray  # int64 [N]: the row of the row's user's first event
    first: np.ndarray  # int64 [N]: the first row of the row's (user, second): the events before it are earlier

    @staticmethod
    def build(log: Interactions) -> "HistoryIndex":
        """`log` must be sorted by (user, ts), as `Interactions.sorted` leaves it."""
        start, first = earlier_rows(log.user, log.ts)
        return HistoryIndex(encode_events(log.item, log.label > 0.5), start, first)

    def rows(self, index: np.ndarray, length: int) -> np.ndarray:
        """Histories of the given rows, int64 [len(index), length], left-padded with PAD_ITEM."""
        offset = self.first[index, None] - length + np.arange(length)[None, :]
        valid = offset >= self.start[index, None]
        return np.where(valid, self.events[np.maximum(offset, 0)] if len(self.events) else PAD_ITEM, PAD_ITEM)


def latest_histories(log: Interactions, n_users: int, length: int) -> np.ndarray:
    """Each user's last `length` events over the whole log, encoded, int64 [n_users, length]."""
    out = np.full((n_users, length), PAD_ITEM, dtype=np.int64)
    if len(log) == 0:
        return out
    events = encode_events(log.item, log.label > 0.5)
    starts = np.flatnonzero(np.r_[True, log.user[1:] != log.user[:-1]])
    ends = np.r_[starts[1:], len(log)]
    for s, e in zip(starts, ends):
        tail = events[max(s, e - length) : e]
        out[log.user[s], length - len(tail) :] = tail
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
