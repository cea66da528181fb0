"""perf.csvfmt (perf_analyzer's CSV and percentiles) and perf.input_data (--input-data JSON)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cascade.features import FeatureConfig, build_tables
from cascade.schema import Dataset, Interactions
from perf.csvfmt import REQUEST_RATE, Row, format_table, from_csv, percentile, percentile_index, summarise, to_csv
from perf.input_data import write_input_data

HEADER = "Concurrency,Inferences/Second,Client Send,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency"


# ---- percentiles -------------------------------------------------------------------------

def test_percentile_index_by_hand() -> None:
    # n = 10: p50 -> floor(4.5 + .5) = 5, p90 -> floor(8.1 + .5) = 8, p95 -> floor(8.55 + .5) = 9, p99 -> floor(8.91 + .5) = 9
    assert [percentile_index(p, 10) for p in (50, 90, 95, 99)] == [5, 8, 9, 9]
    # n = 4: p50 -> floor(1.5 + .5) = 2 (rounds half up, not the lower median), p90 -> floor(2.7 + .5) = 3
    assert percentile_index(50, 4) == 2 and percentile_index(90, 4) == 3
    assert percentile_index(99, 1) == 0 and percentile_index(0, 7) == 0 and percentile_index(100, 7) == 6
    with pytest.raises(ValueError):
        percentile_index(50, 0)


def test_summarise_by_hand() -> None:
    latencies = [700, 100, 1000, 300, 200, 900, 400, 800, 600, 500]  # sorted: 100 .. 1000
    row = summarise(4, latencies, elapsed_s=2.0, send_us=[1, 2, 4], recv_us=[])
    assert row == Row(4, 5.0, 2, 0, 600, 900, 1000, 1000)  # send mean 7/3 truncated to 2
    assert percentile(sorted(latencies), 50) == 600
    with pytest.raises(ValueError):
        summarise(1, [], 1.0)


# ---- CSV -------------------------------------------------------------------------------

def test_csv_exact_text_sorted_by_throughput() -> None:
    rows = [
        Row(8, 12345.67, 12, 3, 640, 900, 1000, 2100),
        Row(1, 589.61149, 10, 3, 1600, 1800, 1900, 2700),
        Row(4, 1139.5, 11, 4, 3400, 4000, 4500, 5100),
    ]
    assert to_csv(rows) == (
        f"{HEADER}\n"
        "1,589.611,10,3,1600,1800,1900,2700\n"
        "4,1139.5,11,4,3400,4000,4500,5100\n"
        "8,12345.7,12,3,640,900,1000,2100\n"
    )


def test_csv_open_loop_header() -> None:
    text = to_csv([Row(250.5, 250.1, 1, 2, 3, 4, 5, 6)], first=REQUEST_RATE)
    assert text.splitlines() == [HEADER.replace("Concurrency", "Request Rate"), "250.5,250.1,1,2,3,4,5,6"]
    with pytest.raises(ValueError):
        to_csv([], first="Threads")


def test_reads_perf_analyzer_own_csv() -> None:
    # a real perf_analyzer 2.51 CSV (it has more columns, and may append other sections after a blank line)
    text = (
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
        "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
        "1,138.079,10,2488,2,87,4009,605,3,5996,10175,13002,20027\n"
        "\nServer metrics,whatever\n"
    )
    assert from_csv(text) == [Row(1, 138.079, 10, 3, 5996, 10175, 13002, 20027)]
    rows = [Row(2, 10.0, 1, 1, 5, 6, 7, 8), Row(1, 5.0, 1, 1, 1, 2, 3, 4)]
    assert from_csv(to_csv(rows)) == sorted(rows, key=lambda r: r.throughput)
    with pytest.raises(ValueError):
        from_csv("a,b\n1,2\n")


def test_table_lists_models_by_load() -> None:
    table = format_table({"rank": [Row(2, 10.04, 0, 0, 5, 6, 7, 8), Row(1, 5.0, 0, 0, 1, 2, 3, 4)]})
    assert table.splitlines()[2:] == ["| rank | 1 | 5.0 | 1 | 2 | 4 |", "| rank | 2 | 10.0 | 5 | 6 | 8 |"]


# ---- input data JSON ---------------------------------------------------------------------

L, N_USERS, N_ITEMS = 4, 6, 40


@pytest.fixture()
def artifacts(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    log = Interactions.sorted(rng.integers(0, N_USERS, 200), rng.integers(0, N_ITEMS, 200), rng.integers(0, 1_000, 200),
                              (rng.random(200) < 0.3).astype(np.float32))
    dataset = Dataset("random", rng.integers(0, 5, size=(N_USERS, 3)), rng.integers(0, 7, size=N_ITEMS),
                      rng.random(N_ITEMS).astype(np.float32) + 1, 7, log)
    tables = build_tables(dataset, log, FeatureConfig(history_len=L))
    tables.save(tmp_path / "tables.npz")
    history = np.full((N_USERS, L), -1, dtype=np.int64)
    history[0, 2:] = [5, 6]
    history[2] = [1, 2, 3, 4]
    history[3, 3] = 39
    # users 1, 4 and 5 have no history: never sampled
    np.save(tmp_path / "user_history.npy", history)
    return tmp_path


def _load(path: Path) -> list[dict]:
    doc = json.loads(path.read_text())
    assert list(doc) == ["data"] and isinstance(doc["data"], list)
    for entry in doc["data"]:
        for name, tensor in entry.items():
            assert set(tensor) == {"content", "shape"}, name
            assert len(tensor["content"]) == int(np.prod(tensor["shape"])), name
    return doc["data"]


def test_input_data_json(artifacts: Path, tmp_path: Path) -> None:
    written = write_input_data(artifacts, tmp_path / "out", n_entries=5, prerank_candidates=10, rank_candidates=6)
    assert sorted(written) == sorted(["feature_assembly", "prerank_pipeline", "rank_pipeline"])
    history = np.load(artifacts / "user_history.npy")
    for pipeline, n in (("prerank_pipeline", 10), ("rank_pipeline", 6)):
        requests = _load(written[pipeline])
        assert len(requests) == 5
        for req in requests:
            assert sorted(req) == ["history", "item_ids", "timestamp", "user_id"]
            assert req["user_id"]["shape"] == [1] and req["timestamp"]["shape"] == [1]
            user, items, hist = req["user_id"]["content"][0], req["item_ids"]["content"], req["history"]["content"]
            assert req["item_ids"]["shape"] == [n] and len(set(items)) == n and all(0 <= i < N_ITEMS for i in items)
            real = history[user][history[user] >= 0].tolist()
            assert real and hist == real and req["history"]["shape"] == [len(real)]
    assert _load(written["feature_assembly"]) == _load(written["prerank_pipeline"])


def test_unbatched_input_data_spells_out_the_batch_of_one(artifacts: Path, tmp_path: Path) -> None:
    """The GPU profile's feature_assembly and ensembles do not batch: their shapes are full ones."""
    batched = _load(write_input_data(artifacts, tmp_path / "b", ["rank_pipeline"], n_entries=3, rank_candidates=6)["rank_pipeline"])
    full = _load(write_input_data(artifacts, tmp_path / "u", ["rank_pipeline"], n_entries=3, rank_candidates=6,
                                  unbatched=True)["rank_pipeline"])
    for b, u in zip(batched, full):
        for name in b:
            assert u[name]["shape"] == [1, *b[name]["shape"]] and u[name]["content"] == b[name]["content"], name


def test_input_data_for_a_two_stage_model_is_the_prerank_request_and_keep(artifacts: Path, tmp_path: Path) -> None:
    written = write_input_data(artifacts, tmp_path / "out", ["two_stage_p1_r2", "prerank_pipeline"], n_entries=3,
                               prerank_candidates=10, rank_candidates=6)
    two_stage, pipeline = _load(written["two_stage_p1_r2"]), _load(written["prerank_pipeline"])
    assert [{k: v for k, v in e.items() if k != "keep"} for e in two_stage] == pipeline
    assert all(e["keep"] == {"content": [6], "shape": [1]} and e["item_ids"]["shape"] == [10] for e in two_stage)


def test_input_data_caps_candidates_at_catalogue(artifacts: Path, tmp_path: Path) -> None:
    written = write_input_data(artifacts, tmp_path / "out", ["rank_pipeline"], n_entries=2, rank_candidates=500)
    assert list(written) == ["rank_pipeline"]
    assert all(e["item_ids"]["shape"] == [N_ITEMS] for e in _load(written["rank_pipeline"]))
    with pytest.raises(ValueError):
        write_input_data(artifacts, tmp_path / "out", ["user_tower"])
    with pytest.raises(FileNotFoundError):
        write_input_data(tmp_path / "missing", tmp_path / "out")
