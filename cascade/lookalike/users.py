"""Every user's look-alike inputs, as training builds them and serving reads them.

`UserSide` is what the scorer (`cascade.models.lookalike.SeedAttention`) takes per user: the
two-tower behaviour embedding, the field buckets (demographics, then geohash cells at several
precisions) and log activity. `UserTable` adds where each user lives; the export writes one
(`users.npz`), Triton's look-alike model and the orchestrator read it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cascade.schema import USER_FIELDS, Interactions


@dataclass(frozen=True)
class UserSide:
    """Every user's scorer inputs: behaviour embedding [U, E], field buckets [U, F], log activity [U, 1]."""

    embedding: np.ndarray
    fields: np.ndarray
    activity: np.ndarray

    @staticmethod
    def of(embedding: np.ndarray, field_buckets: np.ndarray, log: Interactions, rows: np.ndarray,
           places: np.ndarray | None = None) -> "UserSide":
        """`field_buckets`: the tables' user_cat buckets (the demographic fields are kept);
        `places`: geohash buckets per user (`cascade.geo.geohash_buckets`), appended as fields."""
        counts = np.bincount(log.user[rows], minlength=len(embedding)).astype(np.float32)
        fields = field_buckets[:, : len(USER_FIELDS)].astype(np.int64)
        if places is not None:
            fields = np.concatenate([fields, places.astype(np.int64)], axis=1)
        return UserSide(embedding.astype(np.float32), fields, np.log1p(counts)[:, None])

    @property
    def n_users(self) -> int:
        return len(self.embedding)

    def rows(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embedding, fields, activity) of `users`, contiguous: one side of the scorer's inputs."""
        return tuple(np.ascontiguousarray(a[users]) for a in (self.embedding, self.fields, self.activity))

    def tensors(self, users: np.ndarray) -> tuple:
        """`rows` as torch tensors (training and export)."""
        import torch

        return tuple(torch.from_numpy(a) for a in self.rows(users))


@dataclass(frozen=True)
class UserTable:
    """The scorer's inputs per user and where each user lives (lat, lon in degrees; NaN: unknown)."""

    side: UserSide
    lat: np.ndarray
    lon: np.ndarray

    @property
    def n_users(self) -> int:
        return self.side.n_users

    @property
    def located(self) -> np.ndarray:
        return ~(np.isnan(self.lat) | np.isnan(self.lon))

    @property
    def behaviour(self) -> np.ndarray:
        """bool [U]: users with events in training (the rest are cold: rules, not embeddings, speak for them)."""
        return self.side.activity[:, 0] > 0

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        s = self.side
        np.savez(path, embedding=s.embedding, fields=s.fields, activity=s.activity, lat=self.lat, lon=self.lon)

    @staticmethod
    def load(path: Path) -> "UserTable":
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `python -m export` first")
        with np.load(path, allow_pickle=False) as z:
            side = UserSide(z["embedding"].astype(np.float32), z["fields"].astype(np.int64), z["activity"].astype(np.float32))
            table = UserTable(side, z["lat"].astype(np.float64), z["lon"].astype(np.float64))
        n = table.n_users
        shapes = {"fields": len(side.fields), "activity": len(side.activity), "lat": len(table.lat), "lon": len(table.lon)}
        bad = {k: v for k, v in shapes.items() if v != n}
        if bad:
            raise ValueError(f"{path}: {n} embeddings but {bad}; re-run the export")
        return table
