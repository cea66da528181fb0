"""Request validation in the Python-backend adapters, and the GPU profile's rows between feature
assembly and the torch scorer."""
from __future__ import annotations

import numpy as np
import pytest

from cascade.features import FeatureTables, assemble_requests
from cascade.triton.batching import FeatureRequest, check_rows, concat_rows, feature_rows, parse_feature_request

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


def test_parse_feature_request_rejects_a_non_positive_event_outside_the_catalogue(tiny_tables: FeatureTables) -> None:
    with pytest.raises(ValueError, match="history holds 7"):  # -9: a non-positive event of item 7 (cascade.history)
        parse_feature_request(tiny_tables, raw(history=(-9, 1)))


def test_assembly_also_rejects_a_non_positive_event_outside_the_catalogue(tiny_tables: FeatureTables) -> None:
    """Parsing catches -9 first (so only that request fails); assembly refuses it too."""
    good = parse_feature_request(tiny_tables, raw())
    requests = [(good.user_id, good.item_ids, good.history, good.timestamp), (0, good.item_ids, np.array([-9, 1]), 0)]
    with pytest.raises(ValueError, match="history holds 7, outside the catalogue"):
        assemble_requests(tiny_tables, requests)


def test_rows_hand_over_equals_each_request_assembled_alone(tiny_tables: FeatureTables) -> None:
    """The GPU profile: feature_assembly (rows) answers each request with every feature on every
    row, a scalar per row as [n, 1]; the torch scorer concatenates the requests' rows; each request's
    rows are what `assemble_requests` gives it alone."""
    raws = [raw(0, (1, 2), (0,)), raw(5, (), (3, 1)), raw(1, (0, 1, 2, 3, 3), (2, 1, 0, 3), TS + 60)]
    parsed = [parse_feature_request(tiny_tables, r) for r in raws]
    answers = [feature_rows(tiny_tables, p) for p in parsed]
    for answer, p in zip(answers, parsed):
        assert all(t.ndim == 2 and len(t) == len(p.item_ids) for t in answer.values())
    names = sorted(answers[0])
    batch, counts = concat_rows([check_rows(a, names) for a in answers], names)
    assert counts == [2, 0, 5]
    bounds = np.cumsum([0, *counts])
    for (lo, hi), p in zip(zip(bounds[:-1], bounds[1:]), parsed):
        alone, _ = assemble_requests(tiny_tables, [p.as_tuple()])
        for name in names:
            np.testing.assert_array_equal(batch[name][lo:hi].reshape(alone[name].shape), alone[name], err_msg=name)


def test_check_rows_names_a_missing_input_and_disagreeing_counts() -> None:
    good = {"item_id": np.zeros((3, 1)), "user_cat": np.zeros((3, 3))}
    assert check_rows(good, ["item_id", "user_cat"]) is good
    with pytest.raises(ValueError, match="missing input 'ctx'"):
        check_rows(good, ["item_id", "ctx"])
    with pytest.raises(ValueError, match="different row counts"):
        check_rows({**good, "user_cat": np.zeros((2, 3))}, ["item_id", "user_cat"])
