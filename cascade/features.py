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

from cascade.causal import NO_EVENT, Known, Totals, smoothed_rate
from cascade.hashing import hash_bucket
from cascade.history import decode_events, pad_history
from cascade.schema import USER_FIELDS, Dataset, Interactions
from cascade.specs import ITEM_NUM_DIM, USER_CAT_COLUMNS, USER_NUM_DIM, USER_ROW

ITEM_SALT = 101
CATEGORY_SALT = 102
NEGATIVE_CATEGORY_SALT = 103  # a history's non-positive event's category: its own buckets
USER_ID_SALT = 104
USER_FIELD_SALT = 200  # field f uses USER_FIELD_SALT + f
USER_ID_COLUMN = len(USER_FIELDS)  # user_cat's last column: the hashed user id (0: unknown)
RATE_PRIOR = 5.0  # a rate's pseudo-events at the global rate: a user or item with few events stays near it
NO_RECENCY_HOURS = 24.0 * 365  # the recency of a user without earlier events
# Counts and hours enter as log1p(x) / LOG_SCALE, so every number a model reads stays within about
# [-1, 1.5]: wider inputs cost static INT8 its ranking (Kendall tau 0.80 instead of >= 0.9 in
# tests/unit/test_quantize.py, through the teacher's multiplicative cross layers).
LOG_SCALE = 6.0


@dataclass(frozen=True)
class FeatureConfig:
    history_len: int = 50
    item_buckets: int = 100_003
    category_buckets: int = 1_009
    user_field_buckets: int = 1_009
    user_id_buckets: int = 100_003
    hours: int = 24
    weekdays: int = 7


@dataclass(frozen=True)
class FeatureTables:
    """Everything assembly needs to know about users and items, fitted on the training split: what
    serving knows (`cascade.causal.Totals`); training rows read the same statistics as of their time."""

    config: FeatureConfig
    user_fields: np.ndarray  # int64 [U, F]
    item_category: np.ndarray  # int64 [I]
    item_numeric: np.ndarray  # float32 [I]: standardised log of the price-like value
    user_events: np.ndarray  # int64 [U]: training events
    user_positives: np.ndarray  # int64 [U]
    user_last_ts: np.ndarray  # int64 [U]: the latest training event (NO_EVENT: none)
    item_events: np.ndarray  # int64 [I]
    item_positives: np.ndarray  # int64 [I]: training positives (popular channel, logQ)
    global_rate: float  # the training positive rate: where rates start from

    @property
    def n_users(self) -> int:
        return int(self.user_fields.shape[0])

    @cached_property
    def totals(self) -> Totals:
        return Totals(self.user_events, self.user_positives, self.user_last_ts, self.item_events, self.item_positives)

    # Hashed ids, computed once per table instead of per request: every id hashed in a request is a
    # known item or user field, so a lookup gives exactly what `hash_bucket` gives (a unit test checks).
    @cached_property
    def item_id_buckets(self) -> np.ndarray:
        return hash_bucket(np.arange(self.n_items, dtype=np.int64), ITEM_SALT, self.config.item_buckets)

    @cached_property
    def item_cat_buckets(self) -> np.ndarray:
        return hash_bucket(self.item_category, CATEGORY_SALT, self.config.category_buckets)

    @cached_property
    def item_negative_cat_buckets(self) -> np.ndarray:
        return hash_bucket(self.item_category, NEGATIVE_CATEGORY_SALT, self.config.category_buckets)

    @cached_property
    def item_num_rows(self) -> np.ndarray:
        """What serving knows of each item (its item_num row)."""
        everyone = np.arange(self.n_items)
        return item_numbers(self, everyone, self.item_events, self.item_positives)

    @cached_property
    def user_cat_buckets(self) -> np.ndarray:
        cfg = self.config
        fields = [hash_bucket(self.user_fields[:, f], USER_FIELD_SALT + f, cfg.user_field_buckets) for f in range(len(USER_FIELDS))]
        user_id = hash_bucket(np.arange(self.n_users, dtype=np.int64), USER_ID_SALT, cfg.user_id_buckets)
        return np.stack([*fields, np.where(self.user_events > 0, user_id, 0)], axis=1)

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
            arrays = {k: z[k] for k in z.files if k != "config"}
        global_rate = float(arrays.pop("global_rate"))
        return FeatureTables(config, **arrays, global_rate=global_rate)


def _standardise(x: np.ndarray) -> np.ndarray:
    return ((x - x.mean()) / (x.std() + 1e-6)).astype(np.float32)


def build_tables(dataset: Dataset, train: Interactions, config: FeatureConfig) -> FeatureTables:
    totals = Totals.of(train, dataset.n_users, dataset.n_items)
    return FeatureTables(
        config=config,
        user_fields=dataset.user_fields.astype(np.int64),
        item_category=dataset.item_category.astype(np.int64),
        item_numeric=_standardise(np.log(dataset.item_numeric)),
        user_events=totals.user_events, user_positives=totals.user_positives, user_last_ts=totals.user_last_ts,
        item_events=totals.item_events, item_positives=totals.item_positives,
        global_rate=float(train.label.mean()) if len(train) else 0.0,
    )


def hour_and_weekday(ts: np.ndarray, hours: int = 24, weekdays: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Hour of day and weekday (Monday 0: 1970-01-01 was a Thursday) of unix seconds."""
    ts = np.asarray(ts, np.int64)
    return (ts // 3600) % hours, (ts // 86400 + 3) % weekdays


def _rate(positives: np.ndarray, events: np.ndarray, global_rate: float) -> np.ndarray:
    """The positive rate, pulled toward the global one by RATE_PRIOR pseudo-events, less the global rate."""
    return (smoothed_rate(positives, events, global_rate, RATE_PRIOR) - global_rate).astype(np.float32)


def item_numbers(tables: FeatureTables, item_ids: np.ndarray, events: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """item_num rows: [standardised log value, log1p(positives) / LOG_SCALE, the item's positive rate]
    given what is known of each item (its training totals in serving, its earlier events for a
    training row)."""
    return np.stack([
        tables.item_numeric[item_ids], np.log1p(positives) / LOG_SCALE, _rate(positives, events, tables.global_rate),
    ], axis=1).astype(np.float32)


def user_numbers(tables: FeatureTables, known: Known, timestamps: np.ndarray) -> np.ndarray:
    """user_num rows: [log1p(events), the user's positive rate, log1p(hours since the last event)],
    the logs over LOG_SCALE."""
    hours = np.where(known.user_last_ts == NO_EVENT, NO_RECENCY_HOURS, np.maximum(timestamps - known.user_last_ts, 0) / 3600.0)
    return np.stack([
        np.log1p(known.user_events) / LOG_SCALE, _rate(known.user_positives, known.user_events, tables.global_rate),
        np.log1p(hours) / LOG_SCALE,
    ], axis=1).astype(np.float32)


def check_items(tables: FeatureTables, item_ids: np.ndarray, what: str) -> None:
    bad = (item_ids < 0) | (item_ids >= tables.n_items)
    if bad.any():
        raise ValueError(f"{what} holds {int(item_ids[bad][0])}, outside the catalogue [0, {tables.n_items})")


def assemble_items(tables: FeatureTables, item_ids: np.ndarray, known: Known | None = None) -> dict[str, np.ndarray]:
    """Item-side tensors: what serving knows of each item (cacheable), or, for training rows, what
    `known` says was known at the row's time."""
    item_ids = np.asarray(item_ids, dtype=np.int64)
    check_items(tables, item_ids, "item_ids")
    numbers = tables.item_num_rows[item_ids] if known is None else item_numbers(
        tables, item_ids, known.item_events, known.item_positives,
    )
    return {"item_id": tables.item_id_buckets[item_ids], "item_cat": tables.item_cat_buckets[item_ids], "item_num": numbers}


def assemble_users(
    tables: FeatureTables, user_ids: np.ndarray, histories: np.ndarray, timestamps: np.ndarray, known: Known | None = None,
) -> dict[str, np.ndarray]:
    """User-side tensors: from what serving knows of each user (the training totals), or from `known`
    (a training row's time). Unknown users (outside the table) get the 0 'unknown' buckets and no events.
    A history's non-positive events take their category's negative bucket (`cascade.history`)."""
    cfg = tables.config
    user_ids = np.asarray(user_ids, dtype=np.int64)
    items, positive, padded = decode_events(np.asarray(histories, dtype=np.int64).reshape(len(user_ids), cfg.history_len))
    check_items(tables, items[~padded], "history")
    known_user = (user_ids >= 0) & (user_ids < tables.n_users)
    safe = np.where(known_user, user_ids, 0)
    ts = np.asarray(timestamps, dtype=np.int64)
    if known is None:
        known = tables.totals.known(user_ids, np.zeros(len(user_ids), np.int64))
    category = np.where(positive, tables.item_cat_buckets[items], tables.item_negative_cat_buckets[items])
    return {  # unknown users' fields and the padding hash to bucket 0
        "user_cat": np.where(known_user[:, None], tables.user_cat_buckets[safe], 0),
        "user_num": user_numbers(tables, known, ts),
        "hist_item": np.where(padded, 0, tables.item_id_buckets[items]),
        "hist_cat": np.where(padded, 0, category),
        "ctx": np.stack(hour_and_weekday(ts, cfg.hours, cfg.weekdays), axis=1),
    }


def assemble(
    tables: FeatureTables,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    histories: np.ndarray,
    timestamps: np.ndarray,
    known: Known | None = None,
) -> dict[str, np.ndarray]:
    """One row per (user, item) pair: the tensors every model reads (see cascade.specs); `known`: what
    was known at each row's time (training rows, `cascade.causal.as_of_rows`), else serving's totals."""
    return {**assemble_users(tables, user_ids, histories, timestamps, known), **assemble_items(tables, item_ids, known)}


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


def random_rows(cfg: FeatureConfig, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`n` rows of every feature tensor (`cascade.specs.feature_tensors`) with random values inside
    their ranges, no padding: inputs for exporting and benchmarking models without data."""
    L = cfg.history_len
    fields = rng.integers(1, cfg.user_field_buckets, (n, USER_CAT_COLUMNS - 1))
    hist = rng.integers(1, cfg.item_buckets, (n, L))
    return {
        "user_cat": np.concatenate([fields, rng.integers(1, cfg.user_id_buckets, (n, 1))], axis=1),
        "user_num": rng.random((n, USER_NUM_DIM), np.float32),
        "item_id": rng.integers(1, cfg.item_buckets, n), "item_cat": rng.integers(1, cfg.category_buckets, n),
        "item_num": rng.random((n, ITEM_NUM_DIM), np.float32),
        "hist_item": hist, "hist_cat": hist % (cfg.category_buckets - 1) + 1,
        "ctx": np.stack([rng.integers(0, cfg.hours, n), rng.integers(0, cfg.weekdays, n)], axis=1),
    }


def user_rows(counts: list[int]) -> np.ndarray:
    """`user_row` for requests of `counts` candidates one after another: request i's name row i."""
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)
