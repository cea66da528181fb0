"""A raw request as the Python-backend models read it: one user, its candidates, its history,
validated on its own so that a bad request gets its own error while the others of the same
`execute` call are answered."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.features import FeatureTables, assemble_requests, check_items
from cascade.history import decode_events


@dataclass(frozen=True)
class FeatureRequest:
    user_id: int
    item_ids: np.ndarray
    history: np.ndarray
    timestamp: int

    def as_tuple(self) -> tuple[int, np.ndarray, np.ndarray, int]:
        """The form `cascade.features.assemble_request_sides` takes."""
        return self.user_id, self.item_ids, self.history, self.timestamp


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
    items, _, padded = decode_events(history)
    check_items(tables, items[~padded], "history")
    return FeatureRequest(int(tensors["user_id"][0, 0]), item_ids, history, int(tensors["timestamp"][0, 0]))


def feature_rows(tables: FeatureTables, request: FeatureRequest, names: frozenset[str] | None = None) -> dict[str, np.ndarray]:
    """One request's features as the GPU profile's feature_assembly answers: every feature on every
    candidate's row (`assemble_requests`), a scalar per row as [n, 1]."""
    features, _ = assemble_requests(tables, [request.as_tuple()], names)
    return {n: t[:, None] if t.ndim == 1 else t for n, t in features.items()}


def check_rows(tensors: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """One request's rows: every input present with the same row count (a scalar per row may come as
    [n] or [n, 1]); raise ValueError naming the first bad input."""
    counts = {}
    for name in names:
        if name not in tensors:
            raise ValueError(f"missing input {name!r}")
        counts[name] = len(tensors[name])
    if len(set(counts.values())) > 1:
        raise ValueError(f"inputs have different row counts: {counts}")
    return tensors


def concat_rows(requests: list[dict[str, np.ndarray]], names: list[str]) -> tuple[dict[str, np.ndarray], list[int]]:
    """The requests' rows one after another (as they came: a scalar per row stays [n] or [n, 1]), and
    each request's row count."""
    counts = [len(r[names[0]]) for r in requests]
    return {n: np.concatenate([r[n] for r in requests]) for n in names}, counts
