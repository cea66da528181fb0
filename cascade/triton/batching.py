"""Pure helpers for Python-backend models that batch for real.

`execute` receives many requests; these helpers validate each one on its own (a bad request
gets its own error), concatenate the good ones along the candidate axis, and split results back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.features import FeatureTables, check_items
from cascade.history import PAD_ITEM


@dataclass(frozen=True)
class FeatureRequest:
    user_id: int
    item_ids: np.ndarray
    history: np.ndarray
    timestamp: int


def parse_feature_request(tables: FeatureTables, tensors: dict[str, np.ndarray]) -> FeatureRequest:
    """Validate one request's raw tensors (batch dim 1); raise ValueError naming the bad input."""
    for name in ("user_id", "item_ids", "history", "timestamp"):
        if name not in tensors:
            raise ValueError(f"missing input {name!r}")
        if tensors[name].ndim != 2 or tensors[name].shape[0] != 1:
            raise ValueError(f"input {name!r} must have shape [1, n], got {list(tensors[name].shape)}")
    item_ids = tensors["item_ids"][0].astype(np.int64)
    history = tensors["history"][0].astype(np.int64)
    check_items(tables, item_ids, "item_ids")
    check_items(tables, history[history != PAD_ITEM], "history")
    return FeatureRequest(int(tensors["user_id"][0, 0]), item_ids, history, int(tensors["timestamp"][0, 0]))


def check_candidate_shapes(tensors: dict[str, np.ndarray], names: list[str]) -> None:
    """Every input of a scorer request must be [1, n, ...] with one n; raise ValueError if not."""
    rows = set()
    for name in names:
        t = tensors.get(name)
        if t is None:
            raise ValueError(f"missing input {name!r}")
        if t.ndim < 2 or t.shape[0] != 1:
            raise ValueError(f"input {name!r} must have shape [1, n, ...], got {list(t.shape)}")
        rows.add(int(t.shape[1]))
    if len(rows) > 1:
        raise ValueError(f"inputs disagree on the candidate count: {sorted(rows)}")


def concat_candidates(per_request: list[dict[str, np.ndarray]], names: list[str]) -> tuple[dict[str, np.ndarray], list[int]]:
    """[1, n_i, ...] tensors of many requests -> [sum n_i, ...] tensors and the row counts."""
    counts = [int(r[names[0]].shape[1]) for r in per_request]
    return {n: np.concatenate([r[n][0] for r in per_request], axis=0) for n in names}, counts


def split_candidates(tensors: dict[str, np.ndarray], counts: list[int]) -> list[dict[str, np.ndarray]]:
    """The inverse of concat_candidates: one dict of [1, n_i, ...] tensors per request."""
    bounds = np.cumsum([0, *counts])
    out = [{n: t[lo:hi][None] for n, t in tensors.items()} for lo, hi in zip(bounds[:-1], bounds[1:])]
    assert len(out) == len(counts)
    return out
