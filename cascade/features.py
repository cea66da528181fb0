"""Feature assembly: (users, candidate items, histories, timestamps) -> model tensors.

This module is the only place features are computed. Training calls `assemble` on rows of the
log; serving calls `assemble_request_sides` (or `assemble_request_feed`) on requests: the same
user-side and item-side functions `assemble` calls, the user side once per request, which the
request-shaped scorers read as it is (`cascade.specs.USER_ROW`). Broadcast to the candidates
(`assemble_requests`) it gives, row for row, what `assemble` gives.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from cascade.hashing import hash_bucket
from cascade.history import PAD_ITEM, pad_history
from cascade.schema import USER_FIELDS, Dataset, Interactions
from cascade.specs import USER_ROW

ITEM_SALT = 101
CATEGORY_SALT = 102
USER_FIELD_SALT = 200  # field f uses USER_FIELD_SALT + f


@dataclass(frozen=True)
class FeatureConfig:
    history_len: int = 50
    item_buckets: int = 100_003
    category_buckets: int = 1_009
    user_field_buckets: int = 1_009
    hours: int = 24
    weekdays: int = 7


@dataclass(frozen=True)
class FeatureTables:
    """Everything assembly needs to know about users and items, fitted on the training split."""

    config: FeatureConfig
    user_fields: np.ndarray  # int64 [U, F]
    user_activity: np.ndarray  # float32 [U]: log1p(training interactions)
    item_category: np.ndarray  # int64 [I]
    item_numeric: np.ndarray  # float32 [I]: standardised log of the price-like value
    item_popularity: np.ndarray  # float32 [I]: standardised log1p(training positives)
    item_positives: np.ndarray  # int64 [I]: training positives (popular channel, logQ)

    @property
    def n_users(self) -> int:
        return int(self.user_fields.shape[0])

    # Hashed ids, computed once per table instead of per request: every id hashed in a request is a
    # known item or user field, so a lookup gives exactly what `hash_bucket` gives (a unit test checks).
    @cached_property
    def item_id_buckets(self) -> np.ndarray:
        return hash_bucket(np.arange(self.n_items, dtype=np.int64), ITEM_SALT, self.config.item_buckets)

    @cached_property
    def item_cat_buckets(self) -> np.ndarray:
        return hash_bucket(self.item_category, CATEGORY_SALT, self.config.category_buckets)

    @cached_property
    def item_num_rows(self) -> np.ndarray:
        return np.stack([self.item_numeric, self.item_popularity], axis=1)

    @cached_property
    def user_cat_buckets(self) -> np.ndarray:
        cfg = self.config
        return np.stack(
            [hash_bucket(self.user_fields[:, f], USER_FIELD_SALT + f, cfg.user_field_buckets) for f in range(len(USER_FIELDS))],
            axis=1,
        )

    @property
    def n_items(self) -> int:
        return int(self.item_category.shape[0])

    def save(self, path: Path) -> None:
        arrays = {k: v for k, v in asdict(self).items() if k != "config"}
        np.savez(path, config=np.array(json.dumps(asdict(self.config))), **arrays)

    @staticmethod
    def load(path: Path) -> "FeatureTables":
        with np.load(path, allow_pickle=False) as z:
            config = FeatureConfig(**json.loads(str(z["config"])))
            return FeatureTables(config, **{k: z[k] for k in z.files if k != "config"})


def _standardise(x: np.ndarray) -> np.ndarray:
    return ((x - x.mean()) / (x.std() + 1e-6)).astype(np.float32)


def build_tables(dataset: Dataset, train: Interactions, config: FeatureConfig) -> FeatureTables:
    activity = np.bincount(train.user, minlength=dataset.n_users)
    positives = np.bincount(train.item, weights=train.label, minlength=dataset.n_items).astype(np.int64)
    return FeatureTables(
        config=config,
        user_fields=dataset.user_fields.astype(np.int64),
        user_activity=np.log1p(activity).astype(np.float32),
        item_category=dataset.item_category.astype(np.int64),
        item_numeric=_standardise(np.log(dataset.item_numeric)),
        item_popularity=_standardise(np.log1p(positives)),
        item_positives=positives,
    )


def check_items(tables: FeatureTables, item_ids: np.ndarray, what: str) -> None:
    bad = (item_ids < 0) | (item_ids >= tables.n_items)
    if bad.any():
        raise ValueError(f"{what} holds {int(item_ids[bad][0])}, outside the catalogue [0, {tables.n_items})")


def assemble_items(tables: FeatureTables, item_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Item-side tensors (cacheable: they depend on the item alone)."""
    item_ids = np.asarray(item_ids, dtype=np.int64)
    check_items(tables, item_ids, "item_ids")
    return {
        "item_id": tables.item_id_buckets[item_ids],
        "item_cat": tables.item_cat_buckets[item_ids],
        "item_num": tables.item_num_rows[item_ids],
    }


def assemble_users(
    tables: FeatureTables, user_ids: np.ndarray, histories: np.ndarray, timestamps: np.ndarray
) -> dict[str, np.ndarray]:
    """User-side tensors. Unknown users (outside the table) get the 0 'unknown' buckets."""
    cfg = tables.config
    user_ids = np.asarray(user_ids, dtype=np.int64)
    histories = np.asarray(histories, dtype=np.int64).reshape(len(user_ids), cfg.history_len)
    known = (user_ids >= 0) & (user_ids < tables.n_users)
    safe = np.where(known, user_ids, 0)
    padded = histories == PAD_ITEM
    check_items(tables, histories[~padded], "history")
    hist_safe = np.where(padded, 0, histories)
    ts = np.asarray(timestamps, dtype=np.int64)
    return {  # unknown users' fields and the padding hash to bucket 0
        "user_cat": np.where(known[:, None], tables.user_cat_buckets[safe], 0),
        "user_num": np.where(known, tables.user_activity[safe], 0.0).astype(np.float32)[:, None],
        "hist_item": np.where(padded, 0, tables.item_id_buckets[hist_safe]),
        "hist_cat": np.where(padded, 0, tables.item_cat_buckets[hist_safe]),
        "ctx": np.stack([(ts // 3600) % cfg.hours, (ts // 86400 + 3) % cfg.weekdays], axis=1),
    }


def assemble(
    tables: FeatureTables,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    histories: np.ndarray,
    timestamps: np.ndarray,
) -> dict[str, np.ndarray]:
    """One row per (user, item) pair: the tensors every model reads (see cascade.specs)."""
    return {**assemble_users(tables, user_ids, histories, timestamps), **assemble_items(tables, item_ids)}


def assemble_request_sides(
    tables: FeatureTables,
    requests: list[tuple[int, np.ndarray, np.ndarray, int]],
    names: frozenset[str] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[int]]:
    """Serving: many (user_id, item_ids, history, timestamp) requests assembled in one call.

    Returns the user-side tensors with one row per request, the item-side tensors with one row per
    candidate (requests one after another), and each request's candidate count. Only the tensors in
    `names` are returned (all when None).
    """
    L = tables.config.history_len
    counts = [len(items) for _, items, _, _ in requests]
    user_ids = np.array([u for u, _, _, _ in requests], dtype=np.int64)
    histories = np.stack([pad_history(h, L) for _, _, h, _ in requests]) if requests else np.empty((0, L), np.int64)
    timestamps = np.array([t for _, _, _, t in requests], dtype=np.int64)
    item_ids = np.concatenate([np.asarray(i, dtype=np.int64) for _, i, _, _ in requests]) if requests else np.empty(0, np.int64)
    users = {n: t for n, t in assemble_users(tables, user_ids, histories, timestamps).items() if names is None or n in names}
    items = {n: t for n, t in assemble_items(tables, item_ids).items() if names is None or n in names}
    return users, items, counts


def assemble_requests(
    tables: FeatureTables,
    requests: list[tuple[int, np.ndarray, np.ndarray, int]],
    names: frozenset[str] | None = None,
) -> tuple[dict[str, np.ndarray], list[int]]:
    """`assemble_request_sides` with the user side broadcast to each request's candidates: one row
    per candidate, equal row for row to `assemble` on the broadcast inputs (every feature is computed
    per row). Returns the tensors and each request's row count."""
    users, items, counts = assemble_request_sides(tables, requests, names)
    return {**{n: np.repeat(t, counts, axis=0) for n, t in users.items()}, **items}, counts


def as_rows(features: dict[str, np.ndarray], names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Row tensors (every row its own user side: `assemble`, `assemble_requests`) as a scorer's
    input: those in `names` (all when None), with `user_row` = each row's own index."""
    feed = {n: t for n, t in features.items() if names is None or n in names}
    if names is None or USER_ROW.name in names:
        feed[USER_ROW.name] = np.arange(len(features["item_id"]), dtype=np.int64)
    return feed


def assemble_request_feed(
    tables: FeatureTables,
    requests: list[tuple[int, np.ndarray, np.ndarray, int]],
    names: frozenset[str] | None = None,
) -> tuple[dict[str, np.ndarray], list[int]]:
    """A request-shaped scorer's input for many requests: `assemble_request_sides` and `user_row`
    (request i's candidates name row i of the user side). Returns it and each request's count."""
    users, items, counts = assemble_request_sides(tables, requests, names)
    return {**users, **items, USER_ROW.name: user_rows(counts)}, counts


def user_rows(counts: list[int]) -> np.ndarray:
    """`user_row` for requests of `counts` candidates one after another: request i's name row i."""
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)
