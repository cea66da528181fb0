"""What was known of a user and an item before a moment: event counts, positives, the last event.

Training rows and serving requests read the same statistics, each as of its own time: a row of the
log sees only events dated strictly before it (`as_of_rows`, over the whole log, so held-out rows see
earlier held-out events as a live system would); a request sees the export's training log
(`Totals`, the end of training). Events in the same second as a row are not before it: MovieLens
has 75.8 % of ratings sharing their second with another of the same user, and their file order is
not their time order.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from cascade.schema import Interactions

NO_EVENT = -1  # `last_ts` of a user with no earlier event


@dataclass(frozen=True)
class Known:
    """Per row (or per request): the user's and the item's events before it."""

    user_events: np.ndarray  # int64
    user_positives: np.ndarray  # int64
    user_last_ts: np.ndarray  # int64, NO_EVENT when none
    item_events: np.ndarray  # int64
    item_positives: np.ndarray  # int64

    def take(self, index: np.ndarray) -> "Known":
        return Known(*(getattr(self, f.name)[index] for f in fields(self)))


def smoothed_rate(positives: np.ndarray, events: np.ndarray, prior_rate: float, prior_events: float) -> np.ndarray:
    """The positive rate pulled toward `prior_rate` by `prior_events` pseudo-events (`prior_rate` for
    a user or item with no events)."""
    return (positives + prior_events * prior_rate) / (events + prior_events)


def earlier_rows(keys: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by (key, ts): per row, the first row of its key and the first row of its
    (key, ts) run. The rows in [start, first) are the same key's events strictly earlier."""
    n = len(keys)
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    group_start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    run_start = np.flatnonzero(np.r_[True, (keys[1:] != keys[:-1]) | (ts[1:] != ts[:-1])])
    return np.repeat(group_start, np.diff(np.r_[group_start, n])), np.repeat(run_start, np.diff(np.r_[run_start, n]))


def _before(keys: np.ndarray, ts: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For rows sorted by (key, ts): per row, the same key's events strictly earlier, their positives,
    and the row index of the latest of them (-1 when none)."""
    start, first = earlier_rows(keys, ts)
    positives = np.r_[0, np.cumsum(label > 0.5)]
    events = first - start
    return events.astype(np.int64), (positives[first] - positives[start]).astype(np.int64), np.where(events > 0, first - 1, -1)


def as_of_rows(log: Interactions) -> Known:
    """Per row of `log` (sorted by (user, ts), as `Interactions.sorted` leaves it): what was known
    strictly before the row's timestamp."""
    user_events, user_positives, last = _before(log.user, log.ts, log.label)
    order = np.lexsort((log.ts, log.item))
    item_events, item_positives = np.empty(len(log), np.int64), np.empty(len(log), np.int64)
    item_events[order], item_positives[order], _ = _before(log.item[order], log.ts[order], log.label[order])
    user_last_ts = np.where(last >= 0, log.ts[np.maximum(last, 0)], NO_EVENT).astype(np.int64)
    return Known(user_events, user_positives, user_last_ts, item_events, item_positives)


@dataclass(frozen=True)
class Totals:
    """Counts over a whole log (the export's training part): what serving knows of every user and item."""

    user_events: np.ndarray  # int64 [U]
    user_positives: np.ndarray  # int64 [U]
    user_last_ts: np.ndarray  # int64 [U], NO_EVENT for a user without events
    item_events: np.ndarray  # int64 [I]
    item_positives: np.ndarray  # int64 [I]

    @staticmethod
    def of(log: Interactions, n_users: int, n_items: int) -> "Totals":
        last = np.full(n_users, NO_EVENT, np.int64)
        np.maximum.at(last, log.user, log.ts)
        return Totals(
            np.bincount(log.user, minlength=n_users).astype(np.int64),
            np.bincount(log.user, weights=log.label > 0.5, minlength=n_users).astype(np.int64),
            last,
            np.bincount(log.item, minlength=n_items).astype(np.int64),
            np.bincount(log.item, weights=log.label > 0.5, minlength=n_items).astype(np.int64),
        )

    def known(self, user_ids: np.ndarray, item_ids: np.ndarray) -> Known:
        """For (user, item) pairs; a user outside the table (cold start) has no events."""
        user_ids = np.asarray(user_ids, np.int64)
        inside = (user_ids >= 0) & (user_ids < len(self.user_events))
        safe = np.where(inside, user_ids, 0)
        return Known(
            np.where(inside, self.user_events[safe], 0), np.where(inside, self.user_positives[safe], 0),
            np.where(inside, self.user_last_ts[safe], NO_EVENT), self.item_events[item_ids], self.item_positives[item_ids],
        )
