"""Request validation and candidate concat/split used by the Python-backend adapters."""
from __future__ import annotations

import numpy as np
import pytest

from cascade.features import FeatureTables, assemble_request_feed, assemble_request_sides, assemble_requests
from cascade.specs import USER_SIDE
from cascade.triton.batching import (
    FeatureRequest,
    check_candidate_shapes,
    concat_candidates,
    parse_feature_request,
    split_candidates,
    split_sides,
)

TS = 1_700_000_000


def raw(user: int = 1, items=(0, 3), history=(-1, 2), ts: int = TS) -> dict[str, np.ndarray]:
    """One request's tensors as Triton hands them over: a batch dimension of 1."""
    return {
        "user_id": np.array([[user]], dtype=np.int64),
        "item_ids": np.array([list(items)], dtype=np.int64).reshape(1, -1),
        "history": np.array([list(history)], dtype=np.int64).reshape(1, -1),
        "timestamp": np.array([[ts]], dtype=np.int64),
    }


def test_parse_feature_request_valid(tiny_tables: FeatureTables) -> None:
    tensors = raw(user=7, items=(3, 1, 1), history=(-1, -1, 0, 2))
    tensors["item_ids"] = tensors["item_ids"].astype(np.int32)
    got = parse_feature_request(tiny_tables, tensors)
    assert isinstance(got, FeatureRequest)
    assert (got.user_id, got.timestamp) == (7, TS)  # unknown users are allowed: they get bucket 0
    assert type(got.user_id) is int and type(got.timestamp) is int
    assert got.item_ids.dtype == np.int64 and got.item_ids.tolist() == [3, 1, 1]
    assert got.history.dtype == np.int64 and got.history.tolist() == [-1, -1, 0, 2]


def test_parse_feature_request_accepts_no_candidates_and_no_history(tiny_tables: FeatureTables) -> None:
    got = parse_feature_request(tiny_tables, raw(items=(), history=()))
    assert got.item_ids.shape == (0,) and got.history.shape == (0,)


@pytest.mark.parametrize("name", ["user_id", "item_ids", "history", "timestamp"])
def test_parse_feature_request_missing_input(tiny_tables: FeatureTables, name: str) -> None:
    tensors = raw()
    del tensors[name]
    with pytest.raises(ValueError, match=f"missing input '{name}'"):
        parse_feature_request(tiny_tables, tensors)


@pytest.mark.parametrize(
    ("name", "array", "shape"),
    [
        ("item_ids", np.array([0, 3]), "[2]"),  # no batch dimension
        ("history", np.array([[0], [1]]), "[2, 1]"),  # two rows: batch dimension must be 1
        ("user_id", np.array([[[1]]]), "[1, 1, 1]"),
    ],
)
def test_parse_feature_request_wrong_shape(tiny_tables: FeatureTables, name: str, array: np.ndarray, shape: str) -> None:
    with pytest.raises(ValueError, match=rf"input '{name}' must have shape \[1, n\], got \{shape}"):
        parse_feature_request(tiny_tables, {**raw(), name: array})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"items": (0, 4)}, "item_ids holds 4, outside the catalogue [0, 4)"),
        ({"items": (-1,)}, "item_ids holds -1, outside the catalogue"),
        ({"history": (-1, 9)}, "history holds 9, outside the catalogue"),
    ],
)
def test_parse_feature_request_out_of_catalogue(tiny_tables: FeatureTables, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_feature_request(tiny_tables, raw(**overrides))
    assert message in str(err.value)


def test_parse_feature_request_rejects_history_ids_below_padding(tiny_tables: FeatureTables) -> None:
    with pytest.raises(ValueError, match="history"):
        parse_feature_request(tiny_tables, raw(history=(-5, 1)))


def test_assembly_also_rejects_history_ids_below_padding(tiny_tables: FeatureTables) -> None:
    """Parsing catches -5 first (so only that request fails); assembly refuses it too."""
    good = parse_feature_request(tiny_tables, raw())
    requests = [(good.user_id, good.item_ids, good.history, good.timestamp), (0, good.item_ids, np.array([-5, 1]), 0)]
    with pytest.raises(ValueError, match="history holds -5, outside the catalogue"):
        assemble_requests(tiny_tables, requests)


def candidates(n: int, seed: int) -> dict[str, np.ndarray]:
    """One scorer request: per-candidate item tensors [1, n, ...], a per-request user tensor [1, 3]."""
    rng = np.random.default_rng(seed)
    return {
        "item_id": rng.integers(1, 100, size=(1, n)),
        "item_num": rng.normal(size=(1, n, 2)).astype(np.float32),
        "user_cat": rng.integers(1, 100, size=(1, 3)),
    }


PER_CANDIDATE, PER_REQUEST = ["item_id", "item_num"], ["user_cat"]


def test_check_candidate_shapes_accepts_one_candidate_count() -> None:
    check_candidate_shapes(candidates(4, 0), PER_CANDIDATE, PER_REQUEST)
    check_candidate_shapes(candidates(0, 0), PER_CANDIDATE, PER_REQUEST)
    check_candidate_shapes({**candidates(4, 0), "extra": np.zeros(7)}, PER_CANDIDATE, PER_REQUEST)  # unread: ignored


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"user_cat": None}, "missing input 'user_cat'"),
        ({"item_id": np.zeros(4)}, r"input 'item_id' must have shape \[1, n, ...\], got \[4\]"),
        ({"item_num": np.zeros((2, 4, 2))}, r"input 'item_num' must have shape \[1, n, ...\], got \[2, 4, 2\]"),
        ({"item_num": np.zeros((1, 5, 2))}, r"inputs disagree on the candidate count: \[4, 5\]"),
        ({"user_cat": np.zeros((4, 3))}, r"input 'user_cat' must have shape \[1, ...\] \(one per request\), got \[4, 3\]"),
    ],
)
def test_check_candidate_shapes_rejects(change: dict, message: str) -> None:
    tensors = {k: v for k, v in {**candidates(4, 0), **change}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        check_candidate_shapes(tensors, PER_CANDIDATE, PER_REQUEST)


def test_concat_keeps_the_user_side_once_per_request_and_split_restores_candidates() -> None:
    requests = [candidates(2, 1), candidates(0, 2), candidates(5, 3)]
    batch, counts = concat_candidates(requests, PER_CANDIDATE, PER_REQUEST)
    assert counts == [2, 0, 5]
    assert batch["item_id"].shape == (7,)
    assert batch["item_num"].shape == (7, 2) and batch["item_num"].dtype == np.float32
    assert batch["user_cat"].shape == (3, 3)  # each request's one row
    assert batch["user_row"].tolist() == [0, 0, 2, 2, 2, 2, 2]  # each candidate's request
    for i, request in enumerate(requests):
        np.testing.assert_array_equal(batch["user_cat"][i : i + 1], request["user_cat"])

    back = split_candidates({n: batch[n] for n in PER_CANDIDATE}, counts)
    assert len(back) == 3
    for original, restored in zip(requests, back):
        assert set(restored) == set(PER_CANDIDATE)
        for name in PER_CANDIDATE:
            assert restored[name].shape == original[name].shape, name
            assert restored[name].dtype == original[name].dtype, name
            np.testing.assert_array_equal(restored[name], original[name])


def test_split_candidates_of_scores_by_counts() -> None:
    scores = np.arange(7, dtype=np.float32)
    back = split_candidates({"score": scores}, [2, 0, 5])
    assert [b["score"].tolist() for b in back] == [[[0.0, 1.0]], [[]], [[2.0, 3.0, 4.0, 5.0, 6.0]]]


def test_assembly_to_scorer_hand_over_equals_each_request_assembled_alone(tiny_tables: FeatureTables) -> None:
    """feature_assembly_model.execute (assemble the sides once, split per request), then the scorer's
    concat: what `assemble_request_feed` gives, and broadcast by `user_row`, the rows
    `assemble_requests` gives each request alone."""
    raws = [raw(0, (1, 2), (0,)), raw(5, (), (3, 1)), raw(1, (0, 1, 2, 3, 3), (2, 1, 0, 3), TS + 60)]
    parsed = [parse_feature_request(tiny_tables, r) for r in raws]
    as_tuples = [(p.user_id, p.item_ids, p.history, p.timestamp) for p in parsed]
    users, items, counts = assemble_request_sides(tiny_tables, as_tuples)
    assert counts == [2, 0, 5]
    handed_over = split_sides(users, items, counts)
    for name in USER_SIDE:
        assert all(sent[name].shape[0] == 1 for sent in handed_over), name  # one row per request
    batch, _ = concat_candidates(handed_over, list(items), list(users))
    feed, _ = assemble_request_feed(tiny_tables, as_tuples)
    assert sorted(batch) == sorted(feed)
    for name, tensor in feed.items():
        np.testing.assert_array_equal(batch[name], tensor, err_msg=name)
    broadcast = {n: t[batch["user_row"]] if n in USER_SIDE else t for n, t in batch.items() if n != "user_row"}
    for one, rows in zip(as_tuples, split_candidates(broadcast, counts)):
        alone, _ = assemble_requests(tiny_tables, [one])
        for name, tensor in alone.items():
            np.testing.assert_array_equal(rows[name][0], tensor, err_msg=name)
