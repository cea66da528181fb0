"""A look-alike request's pure steps over numpy arrays: who the seeds of an item are, the candidate
pool (nearest users by behaviour, joined with the users near a place), the rules for users without
behaviour, and the blend of distance and similarity the answer is ordered by.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.schema import USER_FIELDS


@dataclass(frozen=True)
class Blend:
    """`distance_weight x closeness + similarity_weight x similarity`, closeness = 1 - d / scale_km
    clipped to [0, 1] (the design document's `0.6 x (1 - d / 5 km) + 0.4 x similarity`). Clipped, so
    beyond `scale_km` similarity alone orders the users (a 50 km radius would otherwise hand the
    distance term -9 and similarity no say)."""

    distance_weight: float = 0.6
    similarity_weight: float = 0.4
    scale_km: float = 5.0

    def __post_init__(self) -> None:
        if self.distance_weight < 0 or self.similarity_weight < 0 or self.distance_weight + self.similarity_weight <= 0:
            raise ValueError(f"blend weights must be >= 0 and not both 0, got {self.distance_weight}, {self.similarity_weight}")
        if not self.scale_km > 0:
            raise ValueError(f"the blend's distance scale must be > 0 km, got {self.scale_km}")

    def scores(self, similarity: np.ndarray, distance_km: np.ndarray | None) -> np.ndarray:
        """float32 [n]; without distances (no place asked for) the similarity alone."""
        similarity = np.asarray(similarity, np.float32)
        if distance_km is None:
            return similarity
        closeness = np.clip(1.0 - np.asarray(distance_km, np.float64) / self.scale_km, 0.0, 1.0)
        return (self.distance_weight * closeness + self.similarity_weight * similarity).astype(np.float32)


@dataclass(frozen=True)
class Likers:
    """Each item's users with a positive event in training, earliest first (CSR: `ptr` [items + 1])."""

    ptr: np.ndarray
    users: np.ndarray

    @staticmethod
    def of(items: np.ndarray, users: np.ndarray, timestamps: np.ndarray, n_items: int) -> "Likers":
        """From positive events (item, user, time); a user liking an item twice counts once, at the first."""
        order = np.lexsort((timestamps, users, items))
        items, users = items[order], users[order]
        first = np.ones(len(items), bool)
        first[1:] = (items[1:] != items[:-1]) | (users[1:] != users[:-1])
        items, users, timestamps = items[first], users[first], timestamps[order][first]
        by_time = np.lexsort((timestamps, items))
        ptr = np.zeros(n_items + 1, np.int64)
        np.add.at(ptr, items + 1, 1)
        return Likers(np.cumsum(ptr), users[by_time].astype(np.int64))

    @property
    def n_items(self) -> int:
        return len(self.ptr) - 1

    def of_item(self, item: int, most: int) -> np.ndarray:
        """The item's latest `most` likers."""
        lo, hi = self.ptr[item], self.ptr[item + 1]
        return self.users[max(lo, hi - most) : hi]


def candidate_pool(similar: np.ndarray, nearby: np.ndarray | None, exclude: np.ndarray, size: int) -> np.ndarray:
    """At most `size` candidates: the users nearest the seeds by behaviour (`similar`, best first);
    with a place asked for (`nearby`: the users within its radius, nearest first), those of them
    that are nearby first, then the nearest others. `exclude` never appears."""
    keep = lambda ids: ids[~np.isin(ids, exclude)]  # noqa: E731
    similar = keep(np.asarray(similar, np.int64))
    if nearby is None:
        return similar[:size]
    nearby = keep(np.asarray(nearby, np.int64))
    both = similar[np.isin(similar, nearby)]
    rest = nearby[~np.isin(nearby, both)]
    return np.concatenate([both, rest])[:size]


def demographic_similarity(seed_fields: np.ndarray, fields: np.ndarray) -> np.ndarray:
    """The rule for users without behaviour: the share of demographic fields (`USER_FIELDS`, the first
    columns) on which a user matches the seeds' most common value, float32 [n] in [0, 1]."""
    n = len(USER_FIELDS)
    modes = np.array([np.bincount(seed_fields[:, f]).argmax() for f in range(n)])
    return (fields[:, :n] == modes).mean(axis=1).astype(np.float32)


def rule_candidates(seed_fields: np.ndarray, fields: np.ndarray, activity: np.ndarray, pool: np.ndarray | None,
                    exclude: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cold start: (users, similarity) from `pool` (the users near the place asked for; None: everyone),
    best demographic match first, the more active first among equals."""
    users = np.arange(len(fields), dtype=np.int64) if pool is None else np.asarray(pool, np.int64)
    users = users[~np.isin(users, exclude)]
    similarity = demographic_similarity(seed_fields, fields[users])
    order = np.lexsort((-activity[users, 0], -similarity))[:size]
    return users[order], similarity[order]
