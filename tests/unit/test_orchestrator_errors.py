"""HTTP error mapping and /metrics of an app whose lifespan never ran: no servers needed."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from cascade.settings import Settings
from orchestrator.app import build_app


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return build_app(Settings(artifacts_dir=tmp_path / "none", run_dir=tmp_path / "run"))


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cascade.test") as client:
        yield client


def samples(text: str, name: str) -> dict[tuple, float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples if s.name == name
    }


async def test_not_started_is_503_saying_so(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/recommend", json={"user_id": 1, "k": 5})
    assert response.status_code == 503
    assert "not ready" in response.json()["error"]
    assert (await http.get("/readyz")).status_code == 503
    assert (await http.get("/healthz")).status_code == 200


class Exploding:
    async def recommend(self, *_request):
        raise RuntimeError("index file vanished")


async def test_invalid_input_is_still_422(app: FastAPI, http: httpx.AsyncClient) -> None:
    app.state.funnel = Exploding()
    response = await http.post("/v1/recommend", json={"user_id": 1, "k": 0})
    assert response.status_code == 422 and response.json()["fields"] == ["k"]


async def test_unexpected_error_is_a_logged_503_not_a_500(
    app: FastAPI, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    app.state.funnel = Exploding()
    with caplog.at_level(logging.ERROR, logger="cascade.orchestrator"):
        response = await http.post("/v1/recommend", json={"user_id": 1, "k": 5})
    assert response.status_code == 503
    assert response.json() == {
        "error": "service unavailable: no answer could be produced (RuntimeError); the orchestrator log has the cause",
        "fields": [],
    }
    assert "index file vanished" in caplog.text


async def test_metrics_count_answers_by_route_and_status(app: FastAPI, http: httpx.AsyncClient) -> None:
    app.state.funnel = Exploding()
    await http.post("/v1/recommend", json={"user_id": 1, "k": 5})
    await http.post("/v1/recommend", json={"user_id": 1, "k": 0})
    await http.get("/nowhere")
    response = await http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    counts = samples(response.text, "cascade_http_requests_total")
    assert counts[(("path", "/v1/recommend"), ("status", "503"))] == 1
    assert counts[(("path", "/v1/recommend"), ("status", "422"))] == 1
    assert counts[(("path", "unmatched"), ("status", "404"))] == 1


async def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    settings = Settings(artifacts_dir=tmp_path / "none")
    first, second = build_app(settings), build_app(settings)
    assert first.state.metrics.registry is not second.state.metrics.registry
