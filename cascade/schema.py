"""The one data schema every source produces and every stage consumes.

A `Dataset` is plain numpy arrays: users (three categorical fields), items (a category and a
price-like number) and a time-ordered interaction log with two binary labels per row: the click
head's (click / liked) and the second objective's (`cascade.heads`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

USER_FIELDS: tuple[str, ...] = ("age_bucket", "gender", "occupation")


@dataclass(frozen=True)
class Interactions:
    """An interaction log sorted by (user, ts); `label` is 1.0 for a positive (click, rating >= 4),
    `second_label` 1.0 for the second objective's positive (a conversion, a 5-star rating, a long dwell)."""

    user: np.ndarray  # int64 [N]
    item: np.ndarray  # int64 [N]
    ts: np.ndarray  # int64 [N], unix seconds
    label: np.ndarray  # float32 [N]
    second_label: np.ndarray  # float32 [N]

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def take(self, index: np.ndarray) -> "Interactions":
        return Interactions(self.user[index], self.item[index], self.ts[index], self.label[index], self.second_label[index])

    @staticmethod
    def sorted(
        user: np.ndarray, item: np.ndarray, ts: np.ndarray, label: np.ndarray, second_label: np.ndarray | None = None,
    ) -> "Interactions":
        """The rows in (user, ts) order. Without `second_label` the log has one objective, which both heads learn."""
        order = np.lexsort((ts, user))
        second = label if second_label is None else second_label
        return Interactions(
            user.astype(np.int64)[order],
            item.astype(np.int64)[order],
            ts.astype(np.int64)[order],
            label.astype(np.float32)[order],
            np.asarray(second, np.float32)[order],
        )


@dataclass(frozen=True)
class Dataset:
    name: str
    user_fields: np.ndarray  # int64 [n_users, len(USER_FIELDS)], raw codes >= 0
    item_category: np.ndarray  # int64 [n_items], 0..n_categories-1
    item_numeric: np.ndarray  # float32 [n_items], price-like, > 0
    n_categories: int
    interactions: Interactions

    @property
    def n_users(self) -> int:
        return int(self.user_fields.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_category.shape[0])

    def validate(self) -> "Dataset":
        """Raise ValueError naming the first array that breaks the schema."""
        checks = [
            (self.user_fields.ndim == 2 and self.user_fields.shape[1] == len(USER_FIELDS), "user_fields shape"),
            (bool((self.user_fields >= 0).all()), "user_fields must be >= 0"),
            (self.item_numeric.shape == self.item_category.shape, "item_numeric/item_category lengths"),
            (bool(((self.item_category >= 0) & (self.item_category < self.n_categories)).all()), "item_category range"),
            (bool((self.item_numeric > 0).all()), "item_numeric must be > 0"),
            (len(self.interactions) > 0, "interactions empty"),
            (bool(((self.interactions.user >= 0) & (self.interactions.user < self.n_users)).all()), "interaction user range"),
            (bool(((self.interactions.item >= 0) & (self.interactions.item < self.n_items)).all()), "interaction item range"),
            (bool(np.isin(self.interactions.label, (0.0, 1.0)).all()), "labels must be 0/1"),
            (bool(np.isin(self.interactions.second_label, (0.0, 1.0)).all()), "second labels must be 0/1"),
        ]
        for ok, what in checks:
            if not ok:
                raise ValueError(f"dataset {self.name!r} breaks the schema: {what}")
        return self


@dataclass(frozen=True)
class Split:
    """Boolean masks over the log: train, then validation, then test, cut by time."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def time_split(interactions: Interactions, valid_fraction: float, test_fraction: float) -> Split:
    """A global time split: every row before the first cut trains, every row from the second cut on
    is held out for test, and validation is what lies between (about the given fractions of rows).

    The cuts are timestamps, so no training row is dated after a held-out one (a per-user split let
    94.8 % of MovieLens' held-out rows have a later training row of the same item), and events that
    share a second always fall on the same side.
    """
    ts = np.sort(interactions.ts)
    n = len(ts)
    valid_cut = ts[min(n - 1, int(n * (1.0 - valid_fraction - test_fraction)))]
    test_cut = ts[min(n - 1, int(n * (1.0 - test_fraction)))]
    train = interactions.ts < valid_cut
    test = interactions.ts >= test_cut
    return Split(train, ~train & ~test, test)
