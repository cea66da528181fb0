"""build_tables / assemble / assemble_requests on the tiny hand-made dataset (see conftest)."""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from cascade.features import (
    CATEGORY_SALT,
    ITEM_SALT,
    LOG_SCALE,
    NEGATIVE_CATEGORY_SALT,
    NO_RECENCY_HOURS,
    RATE_PRIOR,
    USER_FIELD_SALT,
    USER_ID_SALT,
    FeatureTables,
    assemble,
    assemble_requests,
    assemble_users,
    build_tables,
)
from cascade.hashing import hash_bucket
from cascade.causal import Known
from cascade.history import PAD_ITEM, encode_events
from cascade.schema import Dataset
from cascade.specs import feature_tensors

TS = 1_700_000_000  # 2023-11-14 22:13:20 UTC, a Tuesday
P = PAD_ITEM


def hb(values: list[int] | int, salt: int, buckets: int) -> np.ndarray:
    return hash_bucket(np.asarray(values), salt, buckets)


@pytest.fixture
def rows() -> dict[str, np.ndarray]:
    """Three rows: a known user, another known user, an unknown user (5)."""
    return {
        "user_ids": np.array([0, 1, 5]),
        "item_ids": np.array([2, 0, 3]),
        "histories": np.array([[P, P, 0], [P, 3, 1], [2, 1, 0]]),
        "timestamps": np.array([TS, 0, TS + 3 * 3600]),
    }


def test_build_tables_hand_values(tiny_tables: FeatureTables) -> None:
    t = tiny_tables
    assert (t.n_users, t.n_items) == (2, 4)
    assert t.user_fields.tolist() == [[1, 0, 3], [2, 1, 4]]
    assert t.user_events.tolist() == [3, 3] and t.user_positives.tolist() == [2, 3]
    assert t.user_last_ts.tolist() == [300, 400]
    assert t.item_events.tolist() == [2, 2, 1, 1] and t.item_positives.tolist() == [2, 1, 1, 1]
    assert t.item_positives.dtype == np.int64
    assert t.global_rate == pytest.approx(5 / 6)
    # log(price) = log 5 + log 2 * [1, 2, 0, 3]: standardised (k - 1.5) / sqrt(1.25).
    assert t.item_numeric == pytest.approx([(k - 1.5) / math.sqrt(1.25) for k in (1, 2, 0, 3)], rel=1e-5)


def test_build_tables_counts_only_the_training_split(tiny_dataset: Dataset, tiny_tables: FeatureTables) -> None:
    log = tiny_dataset.interactions
    first_rows = log.take(np.array([0, 3]))  # user 0 item 0 (pos), user 1 item 3 (pos)
    t = build_tables(tiny_dataset, first_rows, tiny_tables.config)
    assert t.item_positives.tolist() == [1, 0, 0, 1]
    assert t.user_events.tolist() == [1, 1]


def test_assemble_shapes_and_dtypes_follow_the_specs(tiny_tables: FeatureTables, rows: dict) -> None:
    out = assemble(tiny_tables, **rows)
    specs = feature_tensors(tiny_tables.config.history_len)
    assert set(out) == set(specs)
    for name, spec in specs.items():
        assert out[name].dtype == spec.dtype, name
        assert out[name].shape == (3, *spec.dims), name


def test_assemble_hand_values(tiny_tables: FeatureTables, rows: dict) -> None:
    cfg = tiny_tables.config
    out = assemble(tiny_tables, **rows)

    assert out["item_id"].tolist() == hb([2, 0, 3], ITEM_SALT, cfg.item_buckets).tolist()
    assert out["item_cat"].tolist() == hb([2, 0, 1], CATEGORY_SALT, cfg.category_buckets).tolist()
    assert out["item_num"][:, 0].tolist() == tiny_tables.item_numeric[[2, 0, 3]].tolist()
    # serving knows the training totals: items 2, 0, 3 had 1, 2, 1 positives of 1, 2, 1 events
    g = tiny_tables.global_rate
    rate = lambda pos, n: (pos + RATE_PRIOR * g) / (n + RATE_PRIOR) - g  # noqa: E731
    assert out["item_num"][:, 1] == pytest.approx(np.log1p([1, 2, 1]) / LOG_SCALE)
    assert out["item_num"][:, 2] == pytest.approx([rate(1, 1), rate(2, 2), rate(1, 1)])

    user0 = [hb(v, USER_FIELD_SALT + f, cfg.user_field_buckets) for f, v in enumerate([1, 0, 3])]
    user1 = [hb(v, USER_FIELD_SALT + f, cfg.user_field_buckets) for f, v in enumerate([2, 1, 4])]
    ids = hb([0, 1], USER_ID_SALT, cfg.user_id_buckets).tolist()
    assert out["user_cat"].tolist() == [[*user0, ids[0]], [*user1, ids[1]], [0, 0, 0, 0]]
    assert min(user0 + user1 + ids) >= 1  # a raw code 0 is a real bucket, not the unknown one
    # users 0, 1: 3 events each (2 and 3 positive), the last at 300 and 400; user 5 unknown: none
    assert out["user_num"][:, 0] == pytest.approx(np.array([math.log(4), math.log(4), 0.0]) / LOG_SCALE)
    assert out["user_num"][:, 1] == pytest.approx([rate(2, 3), rate(3, 3), 0.0])
    assert out["user_num"][:, 2] == pytest.approx(np.log1p([(TS - 300) / 3600, 0.0, NO_RECENCY_HOURS]) / LOG_SCALE)

    item_hash = {i: int(hb(i, ITEM_SALT, cfg.item_buckets)) for i in range(4)}
    cat_hash = {i: int(hb(c, CATEGORY_SALT, cfg.category_buckets)) for i, c in enumerate([0, 1, 2, 1])}
    assert out["hist_item"].tolist() == [
        [0, 0, item_hash[0]],
        [0, item_hash[3], item_hash[1]],
        [item_hash[2], item_hash[1], item_hash[0]],
    ]
    assert out["hist_cat"].tolist() == [
        [0, 0, cat_hash[0]],
        [0, cat_hash[3], cat_hash[1]],
        [cat_hash[2], cat_hash[1], cat_hash[0]],
    ]
    assert cat_hash[0] != 0  # item 0's category 0 is not confused with padding


def test_ctx_is_hour_of_day_and_weekday_monday_zero(tiny_tables: FeatureTables, rows: dict) -> None:
    # TS: Tuesday 22:13 UTC; 0: Thursday 1970-01-01 00:00; TS + 3 h: Wednesday 01:13.
    out = assemble(tiny_tables, **rows)
    assert out["ctx"].tolist() == [[22, 1], [0, 3], [1, 2]]
    monday = 1_700_438_400  # 2023-11-20 00:00 UTC
    week_edge = np.array([monday - 60, monday])  # Sunday 23:59, then Monday 00:00
    two = assemble(tiny_tables, np.array([0, 0]), np.array([0, 0]), np.full((2, 3), P), week_edge)
    assert two["ctx"].tolist() == [[23, 6], [0, 0]]


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("item_ids", [2, 4, 3], "item_ids holds 4"),
        ("item_ids", [2, -1, 3], "item_ids holds -1"),
        ("histories", [[P, P, 0], [P, 7, 1], [2, 1, 0]], "history holds 7"),
        ("histories", [[P, P, 0], [P, -7, 1], [2, 1, 0]], "history holds 5"),  # -7: a non-positive event of item 5
    ],
)
def test_ids_outside_the_catalogue_are_rejected(
    tiny_tables: FeatureTables, rows: dict, field: str, value: list, what: str
) -> None:
    with pytest.raises(ValueError, match="outside the catalogue") as err:
        assemble(tiny_tables, **{**rows, field: np.array(value)})
    assert what in str(err.value)


REQUESTS = [
    (0, np.array([1, 2]), np.array([0]), TS),
    (5, np.array([3]), np.array([], dtype=np.int64), 0),
    (1, np.array([0, 1, 2, 3]), np.array([3, 1, 0, 2, 1]), TS + 3600),  # history longer than L = 3
]


def test_assemble_requests_equals_assemble_on_broadcast_rows(tiny_tables: FeatureTables) -> None:
    got, counts = assemble_requests(tiny_tables, REQUESTS)
    assert counts == [2, 1, 4]
    h0, h1, h2 = [P, P, 0], [P, P, P], [0, 2, 1]
    expected = assemble(
        tiny_tables,
        np.array([0, 0, 5, 1, 1, 1, 1]),
        np.array([1, 2, 3, 0, 1, 2, 3]),
        np.array([h0, h0, h1, h2, h2, h2, h2]),
        np.array([TS, TS, 0, *[TS + 3600] * 4]),
    )
    assert set(got) == set(expected)
    for name in expected:
        assert got[name].dtype == expected[name].dtype, name
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_assemble_requests_with_empty_requests_keeps_the_spec_shapes(tiny_tables: FeatureTables) -> None:
    specs = feature_tensors(tiny_tables.config.history_len)
    for requests, counts in ([], []), ([(0, np.array([], dtype=np.int64), np.array([1]), TS)], [0]):
        got, got_counts = assemble_requests(tiny_tables, requests)
        assert got_counts == counts
        for name, spec in specs.items():
            assert got[name].shape == (0, *spec.dims), name
            assert got[name].dtype == spec.dtype, name


def test_feature_tables_save_load_round_trip(tiny_tables: FeatureTables, tmp_path: Path) -> None:
    path = tmp_path / "tables.npz"
    tiny_tables.save(path)
    loaded = FeatureTables.load(path)
    assert loaded.config == tiny_tables.config
    assert loaded.global_rate == tiny_tables.global_rate
    for name, array in asdict(tiny_tables).items():
        if name in ("config", "global_rate"):
            continue
        again = getattr(loaded, name)
        assert again.dtype == array.dtype, name
        np.testing.assert_array_equal(again, array, err_msg=name)


def test_hashed_id_lookups_equal_hashing_every_request(tiny_tables: FeatureTables) -> None:
    """The per-table bucket lookups give exactly what hashing each request's ids gives."""
    from cascade.features import CATEGORY_SALT, ITEM_SALT, USER_FIELD_SALT, assemble_items, assemble_users
    from cascade.hashing import hash_bucket

    cfg, t = tiny_tables.config, tiny_tables
    items = np.array([3, 0, 0, 2, 1])
    got = assemble_items(t, items)
    assert np.array_equal(got["item_id"], hash_bucket(items, ITEM_SALT, cfg.item_buckets))
    assert np.array_equal(got["item_cat"], hash_bucket(t.item_category[items], CATEGORY_SALT, cfg.category_buckets))
    users = np.array([1, 0, 7])  # 7: unknown, every field in bucket 0
    histories = np.array([[-1, 0, 3], [2, 2, 1], [-1, -1, -1]])
    u = assemble_users(t, users, histories, np.array([0, 3600, 86_400]))
    fields = np.where((users < t.n_users)[:, None], t.user_fields[np.minimum(users, t.n_users - 1)], -1)
    for f in range(fields.shape[1]):
        assert np.array_equal(u["user_cat"][:, f], hash_bucket(fields[:, f], USER_FIELD_SALT + f, cfg.user_field_buckets))
    assert np.array_equal(u["hist_item"], hash_bucket(histories, ITEM_SALT, cfg.item_buckets))
    cats = np.where(histories < 0, -1, t.item_category[np.maximum(histories, 0)])
    assert np.array_equal(u["hist_cat"], hash_bucket(cats, CATEGORY_SALT, cfg.category_buckets))
    assert u["user_cat"][2].tolist() == [0, 0, 0, 0] and u["hist_item"][2].tolist() == [0, 0, 0]


def test_a_historys_non_positive_events_keep_their_item_and_take_their_categorys_negative_bucket(
    tiny_tables: FeatureTables,
) -> None:
    cfg, t = tiny_tables.config, tiny_tables
    history = encode_events(np.array([0, 1, 3]), np.array([True, False, True]))
    assert history.tolist() == [0, -3, 3]
    u = assemble_users(t, np.array([0]), history[None, :], np.array([TS]))
    assert u["hist_item"][0].tolist() == hb([0, 1, 3], ITEM_SALT, cfg.item_buckets).tolist()
    assert u["hist_cat"][0].tolist() == [
        int(hb(0, CATEGORY_SALT, cfg.category_buckets)), int(hb(1, NEGATIVE_CATEGORY_SALT, cfg.category_buckets)),
        int(hb(1, CATEGORY_SALT, cfg.category_buckets)),
    ]


def test_a_training_row_reads_what_was_known_at_its_time_not_the_totals(tiny_tables: FeatureTables) -> None:
    known = Known(np.array([1]), np.array([0]), np.array([TS - 7_200]), np.array([0]), np.array([0]))
    row = assemble(tiny_tables, np.array([0]), np.array([2]), np.full((1, 3), P), np.array([TS]), known)
    g = tiny_tables.global_rate
    assert row["user_num"][0] == pytest.approx(
        [math.log(2) / LOG_SCALE, (RATE_PRIOR * g) / (1 + RATE_PRIOR) - g, math.log1p(2.0) / LOG_SCALE], rel=1e-6,
    )
    assert row["item_num"][0, 1:] == pytest.approx([0.0, 0.0])  # nothing known of the item yet: the global rate
    served = assemble(tiny_tables, np.array([0]), np.array([2]), np.full((1, 3), P), np.array([TS]))
    assert served["item_num"][0, 1] == pytest.approx(math.log(2) / LOG_SCALE)  # serving: the training totals


def test_a_user_with_no_training_event_keeps_their_fields_but_reads_the_unknown_id(tiny_dataset: Dataset,
                                                                                    tiny_tables: FeatureTables) -> None:
    """The id row of a user absent from training was never trained: the learnt unknown bucket stands
    in for it (`export.train.hide_user_ids`), while their demographic fields stay."""
    log = tiny_dataset.interactions
    only_user_1 = build_tables(tiny_dataset, log.take(np.flatnonzero(log.user == 1)), tiny_tables.config)
    out = assemble_users(only_user_1, np.array([0, 1]), np.full((2, 3), P), np.array([TS, TS]))
    assert out["user_cat"][:, :-1].tolist() == tiny_tables.user_cat_buckets[:, :-1].tolist()
    assert out["user_cat"][:, -1].tolist() == [0, int(hb(1, USER_ID_SALT, tiny_tables.config.user_id_buckets))]
