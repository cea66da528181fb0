"""Served samples: encoded for the stream and back exactly, joined with labels, and back to model tensors."""
from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pytest

from cascade.features import FeatureTables, assemble, assemble_requests
from cascade.samples import (
    FEATURE_PREFIX,
    META,
    ServedSample,
    decode_sample,
    encode_sample,
    features_of_rows,
    parse_labels,
    sample_rows,
)
from cascade.specs import USER_SIDE, feature_tensors
from orchestrator.export_samples import to_table


def served(tables: FeatureTables, items: list[int], user: int = 1) -> ServedSample:
    history = np.array([1, 2, 3], np.int64)
    item_ids = np.array(items, np.int64)
    features, _ = assemble_requests(tables, [(user, item_ids, history, 1_767_300_000)])
    return ServedSample(
        "req-1", user, 1_767_300_000, "rank", {"prerank": 1, "rank": 2}, "exp", "treatment",
        item_ids, np.linspace(0.9, 0.1, len(items)).astype(np.float32), features,
    )


def test_a_sample_survives_the_stream_encoding_exactly(tiny_tables: FeatureTables) -> None:
    sample = served(tiny_tables, [0, 1, 2, 3])
    fields = encode_sample(sample)
    back = decode_sample({k.encode(): v for k, v in fields.items()})  # redis hands back bytes keys
    assert (back.request_id, back.user_id, back.timestamp, back.scored_by) == ("req-1", 1, 1_767_300_000, "rank")
    assert back.model_versions == {"prerank": 1, "rank": 2} and (back.experiment, back.arm) == ("exp", "treatment")
    np.testing.assert_array_equal(back.item_ids, sample.item_ids)
    np.testing.assert_array_equal(back.scores, sample.scores)
    assert set(back.features) == set(feature_tensors(tiny_tables.config.history_len))
    for name, tensor in sample.features.items():
        assert back.features[name].dtype == tensor.dtype
        np.testing.assert_array_equal(back.features[name], tensor, err_msg=name)


def legacy_fields(sample: ServedSample) -> dict[bytes, bytes]:
    """A stream entry as serving wrote it before the raw encoding: one .npy blob per array."""
    def npy(array: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()

    names = ("request_id", "user_id", "timestamp", "scored_by", "model_versions", "experiment", "arm")
    meta = {name: getattr(sample, name) for name in names}
    fields = {META: json.dumps(meta).encode(), "item_ids": npy(sample.item_ids), "scores": npy(sample.scores)}
    for name, tensor in sample.features.items():
        fields[FEATURE_PREFIX + name] = npy(tensor[:1] if name in USER_SIDE else tensor)
    return {k.encode(): v for k, v in fields.items()}


def test_entries_in_the_earlier_npy_encoding_still_decode(tiny_tables: FeatureTables) -> None:
    sample = served(tiny_tables, [0, 1, 2, 3])
    back = decode_sample(legacy_fields(sample))
    assert (back.request_id, back.model_versions, back.arm) == ("req-1", {"prerank": 1, "rank": 2}, "treatment")
    np.testing.assert_array_equal(back.item_ids, sample.item_ids)
    np.testing.assert_array_equal(back.scores, sample.scores)
    for name, tensor in sample.features.items():
        assert back.features[name].dtype == tensor.dtype
        np.testing.assert_array_equal(back.features[name], tensor, err_msg=name)


def test_decoded_arrays_are_writable_copies(tiny_tables: FeatureTables) -> None:
    back = decode_sample(encode_sample(served(tiny_tables, [0, 1])))
    assert back.item_ids.flags.writeable and all(t.flags.writeable for t in back.features.values())


def test_an_empty_answer_round_trips(tiny_tables: FeatureTables) -> None:
    sample = served(tiny_tables, [])
    back = decode_sample(encode_sample(sample))
    assert back.item_ids.shape == (0,) and back.item_ids.dtype == np.int64
    for name, tensor in sample.features.items():
        assert back.features[name].shape == tensor.shape and back.features[name].dtype == tensor.dtype, name


def test_user_side_tensors_are_stored_once(tiny_tables: FeatureTables) -> None:
    few, many = encode_sample(served(tiny_tables, [0])), encode_sample(served(tiny_tables, [0, 1, 2, 3] * 10))
    for name in USER_SIDE:
        assert len(few[f"f:{name}"]) == len(many[f"f:{name}"]), name
    assert len(many["f:item_id"]) > len(few["f:item_id"])


def test_logged_features_equal_training_assembly_row_for_row(tiny_tables: FeatureTables) -> None:
    """The features serving logs are what `assemble` (the training code) gives for the same rows."""
    sample = served(tiny_tables, [0, 1, 2])
    L = tiny_tables.config.history_len
    hist = np.full((3, L), -1, np.int64)
    hist[:, -3:] = [1, 2, 3]
    offline = assemble(tiny_tables, np.full(3, 1), sample.item_ids, hist, np.full(3, 1_767_300_000))
    for name, tensor in offline.items():
        np.testing.assert_array_equal(decode_sample(encode_sample(sample)).features[name], tensor, err_msg=name)


def test_a_feature_with_the_wrong_row_count_is_refused(tiny_tables: FeatureTables) -> None:
    sample = served(tiny_tables, [0, 1])
    bad = ServedSample(**{**sample.__dict__, "features": {**sample.features, "item_id": sample.features["item_id"][:1]}})
    with pytest.raises(ValueError, match="item_id has 1 rows for 2 served items"):
        encode_sample(bad)


def test_labels_parse_from_the_hash_ignoring_strangers() -> None:
    raw = {b"clicks:7": b"1", b"impressions:7": b"2", b"dwell_ms:9": b"12000", b"junk": b"1", b"clicks:x": b"1"}
    assert parse_labels(raw) == {
        7: {"impressions": 2, "clicks": 1, "dwell_ms": 0}, 9: {"impressions": 0, "clicks": 0, "dwell_ms": 12_000},
    }


def test_rows_join_labels_and_keep_only_reported_items_by_default(tiny_tables: FeatureTables) -> None:
    sample = served(tiny_tables, [0, 1, 2, 3])
    labels = parse_labels({"impressions:0": 1, "impressions:1": 1, "clicks:1": 1, "dwell_ms:2": 15_000, "impressions:99": 1})
    rows = sample_rows(sample, labels, dwell_positive_ms=10_000, impressed_only=True)
    assert [(r["item_id"], r["position"], r["label"]) for r in rows] == [(0, 0, 0), (1, 1, 1), (2, 2, 1)]
    assert [r["second_label"] for r in rows] == [0, 0, 1]  # the long dwell alone
    assert rows[1]["served_score"] == pytest.approx(float(sample.scores[1]))
    assert (rows[0]["rank_version"], rows[0]["prerank_version"], rows[0]["arm"]) == (2, 1, "treatment")
    every = sample_rows(sample, labels, dwell_positive_ms=20_000, impressed_only=False)
    assert [(r["item_id"], r["label"]) for r in every] == [(0, 0), (1, 1), (2, 0), (3, 0)]


def test_rows_through_parquet_columns_give_back_the_model_tensors(tiny_tables: FeatureTables, tmp_path) -> None:
    import pyarrow.parquet as pq

    sample = served(tiny_tables, [0, 1, 2])
    rows = sample_rows(sample, {}, 10_000, impressed_only=False)
    path = tmp_path / "s.parquet"
    pq.write_table(to_table(rows), path)
    table = pq.read_table(path)
    assert isinstance(table.schema.field("f:hist_item").type, pa.FixedSizeListType)
    tensors = features_of_rows(table.to_pydict(), tiny_tables.config.history_len)
    for name, tensor in sample.features.items():
        assert tensors[name].dtype == tensor.dtype
        np.testing.assert_array_equal(tensors[name], tensor, err_msg=name)


def test_the_stream_cap_bounds_entries_by_count_and_by_bytes() -> None:
    from cascade.samples import stream_cap

    assert stream_cap(1_000, max_len=100_000, max_bytes=1 << 20) == 1_048  # bytes bind first
    assert stream_cap(1_000, max_len=500, max_bytes=1 << 20) == 500  # the count binds first
    assert stream_cap(10 << 20, max_len=500, max_bytes=1 << 20) == 1  # one oversized entry is kept
    assert stream_cap(0, max_len=7, max_bytes=1) == 1

