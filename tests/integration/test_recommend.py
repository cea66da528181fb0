"""/v1/recommend end to end: real Triton (ensembles over gRPC), real Redis, real FAISS index."""
from __future__ import annotations

import time

import httpx
import pytest

from cascade.settings import Settings

pytestmark = pytest.mark.integration


async def recommend(client: httpx.AsyncClient, **body) -> httpx.Response:
    return await client.post("/v1/recommend", json=body)


async def test_returns_k_distinct_catalogue_items(client: httpx.AsyncClient, exported: Settings) -> None:
    response = await recommend(client, user_id=3, k=20)
    assert response.status_code == 200, response.text
    body = response.json()
    ids = [item["item_id"] for item in body["items"]]
    assert len(ids) == 20 and len(set(ids)) == 20
    assert all(0 <= i < exported.n_items for i in ids)
    assert body["degraded"] == [] and body["cold_start"] is False
    assert body["model_versions"] == {"prerank": 1, "rank": 1, "user_tower": 1}
    assert set(body["latency_ms"]) >= {"recall", "exposure_filter", "prerank+rank", "rerank", "total"}  # one Triton call
    assert {item["channel"] for item in body["items"]} <= {"ann", "item_to_item", "popular"}
    nonce, tag = body["request_id"].split(".")  # signed for this user (cascade.request_ids)
    assert len(nonce) == 24 and len(tag) == 32


async def test_second_call_shows_none_of_the_first(client: httpx.AsyncClient) -> None:
    first = (await recommend(client, user_id=7, k=15)).json()
    second = (await recommend(client, user_id=7, k=15)).json()
    seen = {i["item_id"] for i in first["items"]}
    assert len(second["items"]) == 15
    assert seen.isdisjoint(i["item_id"] for i in second["items"])


async def test_cold_start_user_gets_k_items(client: httpx.AsyncClient, exported: Settings) -> None:
    response = await recommend(client, user_id=exported.n_users + 12345, k=8)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cold_start"] is True and len({i["item_id"] for i in body["items"]}) == 8
    assert "popular" in {i["channel"] for i in body["items"]} <= {"popular", "explore"}  # config/recall.toml's cold start


async def test_context_timestamp_is_accepted(client: httpx.AsyncClient) -> None:
    response = await recommend(client, user_id=5, k=3, context={"timestamp": int(time.time()) - 3_600})
    assert response.status_code == 200 and len(response.json()["items"]) == 3


async def test_context_timestamp_outside_the_window_is_422(client: httpx.AsyncClient) -> None:
    for ts in (1_700_000_000, int(time.time()) + 3_600):  # older than CASCADE_LABEL_TTL_S; over 5 minutes ahead
        response = await recommend(client, user_id=5, k=3, context={"timestamp": ts})
        assert response.status_code == 422 and response.json()["fields"] == ["context.timestamp"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": 1, "k": 0}, "k"),
        ({"user_id": 1, "k": 201}, "k"),
        ({"user_id": 1, "k": "10"}, "k"),
        ({"k": 10}, "user_id"),
        ({"user_id": "abc", "k": 10}, "user_id"),
        ({"user_id": -1, "k": 10}, "user_id"),
        ({"user_id": 1, "k": 5, "colour": "red"}, "colour"),
        ({"user_id": 1, "k": 5, "context": {"timestamp": "noon"}}, "context.timestamp"),
    ],
)
async def test_bad_request_is_4xx_naming_the_field(client: httpx.AsyncClient, body: dict, field: str) -> None:
    response = await client.post("/v1/recommend", json=body)
    assert response.status_code == 422
    assert field in response.json()["fields"]
    assert field in response.json()["error"]


async def test_oversized_body_is_413(client: httpx.AsyncClient, exported: Settings) -> None:
    padding = "x" * (exported.max_body_bytes + 1)
    response = await client.post("/v1/recommend", content=f'{{"user_id": 1, "k": 5, "pad": "{padding}"}}',
                                  headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["fields"] == ["body"]


async def test_malformed_json_is_4xx(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


async def test_health_and_readiness_report_triton_and_redis(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["triton"] == {"ready": True, "models": {"prerank_pipeline_v1": True, "rank_pipeline_v1": True, "lookalike_v1": True}}
    assert body["redis"] == {"ready": True} and body["index"]["ready"] is True
