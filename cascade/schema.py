"""The one data schema every source produces and every stage consumes.

A `Dataset` is plain numpy arrays: users (three categorical fields), items (a category and a
price-like number) and a time-ordered interaction log with binary labels (click / liked).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

USER_FIELDS: tuple[str, ...] = ("age_bucket", "gender", "occupation")


@dataclass(frozen=True)
class Interactions:
    """An interaction log sorted by (user, ts); `label` is 1.0 for a positive (click, rating >= 4)."""

    user: np.ndarray  # int64 [N]
    item: np.ndarray  # int64 [N]
    ts: np.ndarray  # int64 [N], unix seconds
    label: np.ndarray  # float32 [N]

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def take(self, index: np.ndarray) -> "Interactions":
        return Interactions(self.user[index], self.item[index], self.ts[index], self.label[index])

    @staticmethod
    def sorted(user: np.ndarray, item: np.ndarray, ts: np.ndarray, label: np.ndarray) -> "Interactions":
        order = np.lexsort((ts, user))
        return Interactions(
            user.astype(np.int64)[order],
            item.astype(np.int64)[order],
            ts.astype(np.int64)[order],
            label.astype(np.float32)[order],
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
        ]
        for ok, what in checks:
            if not ok:
                raise ValueError(f"dataset {self.name!r} breaks the schema: {what}")
        return self


def time_split(interactions: Interactions, holdout_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-user time-ordered split: each user's last `holdout_fraction` interactions are held out.

    Returns boolean masks (train, test) over the (user, ts)-sorted log.
    """
    user = interactions.user
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    counts = np.diff(np.r_[starts, len(user)])
    position = np.arange(len(user)) - np.repeat(starts, counts)
    n_test = np.floor(counts * holdout_fraction).astype(np.int64)
    test = position >= np.repeat(counts - n_test, counts)
    return ~test, test
