"""Sample logging end to end: an answer's features and versions on the stream, labels from feedback,
the parquet export, and offline re-scoring of the exported rows giving the served scores."""
from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from cascade.features import as_rows
from cascade.samples import features_of_rows
from cascade.settings import Settings
from cascade.specs import prerank_spec, rank_spec
from cascade.triton.layout import ONNX_FILE
from export.onnx_export import session
from export.repository import versions_folder
from orchestrator.export_samples import export_samples

pytestmark = pytest.mark.integration
TS = int(time.time())  # fixed for the session, within the window the API accepts


async def recommend(http: httpx.AsyncClient, user_id: int, k: int = 10) -> dict:
    response = await http.post("/v1/recommend", json={"user_id": user_id, "k": k, "context": {"timestamp": TS}})
    assert response.status_code == 200, response.text
    return response.json()


async def send(http: httpx.AsyncClient, events: list[dict]) -> dict:
    response = await http.post("/v1/feedback", json={"events": events})
    assert response.status_code == 200, response.text
    return response.json()


def rescore(settings: Settings, scorer: str, version: int, rows: dict) -> np.ndarray:
    """The exported rows' tensors through the ONNX file Triton served as `scorer` version `version`."""
    spec = {"rank": rank_spec, "prerank": prerank_spec}[scorer](settings.history_len)
    tensors = features_of_rows(rows, settings.history_len)
    onnx = versions_folder(settings.model_repository, scorer, settings.triton_profile) / str(version) / ONNX_FILE
    return session(onnx).run(["score"], as_rows(tensors, spec.input_names))[0]


def rows_of(path: Path, request_id: str) -> dict:
    table = pq.read_table(path, filters=[("request_id", "==", request_id)])
    return table.sort_by("position").to_pydict()


async def test_exported_samples_carry_labels_and_rescore_to_the_served_scores(client, exported: Settings, tmp_path) -> None:
    user = 221
    answer = await recommend(client, user)
    assert answer["degraded"] == [] and answer["scored_by"] == "rank"
    items = [i["item_id"] for i in answer["items"]]
    ev = lambda item, kind, **extra: {  # noqa: E731
        "event_id": uuid.uuid4().hex, "request_id": answer["request_id"], "user_id": user, "item_id": item, "type": kind, **extra,
    }
    events = [ev(i, "impression") for i in items[:5]] + [ev(items[1], "click"), ev(items[2], "dwell", dwell_ms=12_000)]
    assert await send(client, events) == {"accepted": 7, "duplicates": 0}
    assert await send(client, events) == {"accepted": 0, "duplicates": 7}  # a replay adds no label

    out = tmp_path / "samples.parquet"
    result = await asyncio.to_thread(export_samples, exported, out)
    assert result["samples"] >= 1 and result["rows"] >= 5
    rows = rows_of(out, answer["request_id"])
    assert rows["item_id"] == items[:5] and rows["position"] == list(range(5))  # only the reported items
    assert rows["impressions"] == [1] * 5 and rows["clicks"] == [0, 1, 0, 0, 0]
    assert rows["dwell_ms"] == [0, 0, 12_000, 0, 0]
    assert rows["label"] == [0, 1, 1, 0, 0]  # a click, or dwell >= CASCADE_DWELL_POSITIVE_MS (10 s)
    assert rows["second_label"] == [0, 0, 1, 0, 0]  # the dwell alone: the second head's (cascade.heads)
    assert set(rows["rank_version"]) == {answer["model_versions"]["rank"]} and set(rows["scored_by"]) == {"rank"}

    served = np.array(rows["served_score"], np.float32)
    np.testing.assert_allclose(served, [i["score"] for i in answer["items"][:5]], rtol=0, atol=1e-6)
    offline = rescore(exported, "rank", answer["model_versions"]["rank"], rows)
    print(f"re-scored {len(offline)} logged rows: max |offline - served| = {np.max(np.abs(offline - served)):.2e}")
    assert np.max(np.abs(offline - served)) < 1e-5

    everything = tmp_path / "all.parquet"
    await asyncio.to_thread(export_samples, exported, everything, "-", False)
    assert rows_of(everything, answer["request_id"])["item_id"] == items  # --all: every served item


async def test_an_answer_scored_by_the_preranker_logs_and_rescores_as_such(configure, serve, exported, tmp_path) -> None:
    """Rank out of time: the answer keeps pre-rank's scores, and its sample says so."""
    slow_rank = configure(stage_budgets_ms={"rank": 0.001}, deadline_slack=False, two_stage=False)  # rank's own call
    async with serve(slow_rank) as (_, http):
        answer = await recommend(http, 222, k=6)
    assert answer["scored_by"] == "prerank" and {d["stage"] for d in answer["degraded"]} == {"rank"}
    out = tmp_path / "prerank.parquet"
    await asyncio.to_thread(export_samples, exported, out, "-", False)
    rows = rows_of(out, answer["request_id"])
    assert set(rows["scored_by"]) == {"prerank"}
    offline = rescore(exported, "prerank", answer["model_versions"]["prerank"], rows)
    assert np.max(np.abs(offline - np.array([i["score"] for i in answer["items"]], np.float32))) < 1e-5
