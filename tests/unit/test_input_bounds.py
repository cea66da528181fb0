"""Every numeric input bounded to its domain (422 naming the field), body limits on chunked bodies
(413 after reading no more than the limit), nesting depth (422), and 503s that say why and when to
retry. An app whose lifespan never ran, with fakes where the routes need a funnel or a store."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import orjson
import pytest
from fastapi import FastAPI

from cascade.feedback import Event
from cascade.recall.merge import Candidates
from cascade.settings import Settings
from orchestrator.app import build_app
from orchestrator.clients.errors import BackendUnavailable
from orchestrator.context import RequestContext
from orchestrator.funnel import Answer
from orchestrator.schemas import INPUT_INT_MAX, MAX_DWELL_MS

DAY_S = 86_400
LABEL_TTL_S = 2 * DAY_S


class CannedFunnel:
    """Answers every request with one item, noting what it was asked."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.asked = settings, []
        self.resources = SimpleNamespace(tables=SimpleNamespace(n_items=100))

    def issued(self, request_id: str, user_id: int) -> bool:
        return request_id == f"issued-to-{user_id}"

    async def recommend(self, user_id: int, k: int, timestamp: int | None, started: float) -> Answer:
        self.asked.append((user_id, k, timestamp))
        ctx = RequestContext("r", user_id, k, timestamp or int(time.time()), {"rank": 1}, (), None, "none")
        items = Candidates(np.array([5]), np.array([0]), np.array([0.5], np.float32), ("ann",))
        return Answer(ctx, False, items, np.array([3]), {"rank": 1}, "rank", {"total": 1.0}, [])


class Store:
    def __init__(self, down: bool = False) -> None:
        self.down, self.recorded = down, []

    async def record(self, events: list[Event]) -> list[bool]:
        if self.down:
            raise BackendUnavailable("redis: Connection refused")
        self.recorded.extend(events)
        return [True] * len(events)


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    settings = Settings(artifacts_dir=tmp_path / "none", run_dir=tmp_path / "run", label_ttl_s=LABEL_TTL_S)
    app = build_app(settings)
    app.state.funnel, app.state.feedback = CannedFunnel(settings), Store()
    return app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cascade.test") as client:
        yield client


def event(**fields) -> dict:
    return {"event_id": "e", "request_id": "", "user_id": 1, "item_id": 2, "type": "impression", **fields}


async def refused_fields(http: httpx.AsyncClient, path: str, body: dict) -> list[str]:
    response = await http.post(path, json=body)
    assert response.status_code == 422, response.text
    return response.json()["fields"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": 2**63}, "user_id"),
        ({"user_id": INPUT_INT_MAX + 1}, "user_id"),
        ({"user_id": 1.5}, "user_id"),
        ({"user_id": 1, "k": 199.5}, "k"),
        ({"user_id": 1, "context": {"timestamp": 2**63}}, "context.timestamp"),
        ({"user_id": 1, "context": {"timestamp": 1_700_000_000}}, "context.timestamp"),  # older than the label TTL
        ({"user_id": 1, "context": {"timestamp": "now+1h"}}, "context.timestamp"),
    ],
)
async def test_recommend_out_of_domain_is_422_naming_the_field(http: httpx.AsyncClient, body: dict, field: str) -> None:
    assert await refused_fields(http, "/v1/recommend", body) == [field]


async def test_recommend_timestamp_window_is_ttl_back_and_5_minutes_ahead(app: FastAPI, http: httpx.AsyncClient) -> None:
    now = int(time.time())
    for ts in (now - LABEL_TTL_S + 60, now + 240):
        response = await http.post("/v1/recommend", json={"user_id": 1, "context": {"timestamp": ts}})
        assert response.status_code == 200, response.text
    assert await refused_fields(http, "/v1/recommend", {"user_id": 1, "context": {"timestamp": now + 600}}) == ["context.timestamp"]
    assert await refused_fields(http, "/v1/recommend", {"user_id": 1, "context": {"timestamp": now - LABEL_TTL_S - 60}}) == [
        "context.timestamp"
    ]


async def test_integer_valued_floats_are_integers(app: FastAPI, http: httpx.AsyncClient) -> None:
    """JSON Schema's `integer` (the document's) admits 199.0: so does the API, as 199."""
    now = int(time.time())
    body = {"user_id": float(INPUT_INT_MAX), "k": 199.0, "context": {"timestamp": float(now)}}
    response = await http.post("/v1/recommend", content=orjson.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert app.state.funnel.asked == [(INPUT_INT_MAX, 199, now)]
    assert all(type(v) is int for v in app.state.funnel.asked[0])


@pytest.mark.parametrize(
    ("events", "field"),
    [
        ([event(user_id=2**63)], "events.0.user_id"),
        ([event(item_id=2**63)], "events.0.item_id"),
        ([event(), event(type="dwell", dwell_ms=MAX_DWELL_MS + 1)], "events.1.dwell_ms"),
        ([event(type="click", dwell_ms=5)], "events.0.dwell_ms"),
        ([event(timestamp=2**63)], "events.0.timestamp"),
        ([event(timestamp=int(time.time()) + 3_600)], "events.0.timestamp"),  # future-dated: would never expire
        ([event(timestamp=int(time.time()) - LABEL_TTL_S - 60)], "events.0.timestamp"),
        ([event(user_id=1.5)], "events.0.user_id"),
    ],
)
async def test_feedback_out_of_domain_is_422_naming_the_field(http: httpx.AsyncClient, events: list[dict], field: str) -> None:
    assert field in await refused_fields(http, "/v1/feedback", {"events": events})


async def test_feedback_in_domain_is_accepted(app: FastAPI, http: httpx.AsyncClient) -> None:
    now = int(time.time())
    events = [event(event_id="a", user_id=float(INPUT_INT_MAX), timestamp=now + 240),
              event(event_id="b", type="dwell", dwell_ms=float(MAX_DWELL_MS), timestamp=now - LABEL_TTL_S + 60)]
    response = await http.post("/v1/feedback", content=orjson.dumps({"events": events}), headers={"content-type": "application/json"})
    assert response.status_code == 200 and response.json() == {"accepted": 2, "duplicates": 0}
    first, second = app.state.feedback.recorded
    assert (first.user_id, second.dwell_ms) == (INPUT_INT_MAX, MAX_DWELL_MS) and type(first.user_id) is int


async def call_chunked(app: FastAPI, path: str, total: int, chunk: int = 65_536) -> tuple[int, dict, int]:
    """POST `total` bytes in chunks without a Content-Length, as a chunked upload arrives: the status,
    the body, and how many bytes the app pulled."""
    pulled, sent = 0, []

    async def receive() -> dict:
        nonlocal pulled
        size = min(chunk, total - pulled)
        pulled += size
        return {"type": "http.request", "body": b"[" * size, "more_body": pulled < total}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"cascade.test"), (b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1), "server": ("cascade.test", 80),
    }
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], orjson.loads(body), pulled


@pytest.mark.parametrize(("path", "limit"), [("/v1/recommend", 16_384), ("/v1/feedback", 131_072)])
async def test_chunked_body_over_the_limit_is_413_reading_no_more(app: FastAPI, path: str, limit: int) -> None:
    status, body, pulled = await call_chunked(app, path, 10 * 2**20)
    assert status == 413 and body["fields"] == ["body"] and str(limit) in body["error"]
    assert pulled <= limit + 65_536  # the limit and the chunk that passed it, never the 10 MB


async def test_chunked_body_within_the_limit_is_read(app: FastAPI) -> None:
    status, body, _ = await call_chunked(app, "/v1/recommend", 100, chunk=7)
    assert status == 422 and body["fields"] == ["body"]  # read whole: 100 x "[" is not a recommend body


@pytest.mark.parametrize(("path", "inner"), [
    ("/v1/recommend", b'{"user_id": %s}'), ("/v1/recommend", b'{"user_id": 1, "context": %s}'),
    ("/v1/feedback", b'{"events": %s}'), ("/v1/feedback", b'{"events": [{"event_id": %s}]}'),
])
async def test_deep_nesting_is_422_before_it_is_built(http: httpx.AsyncClient, path: str, inner: bytes) -> None:
    depth = 5_000  # 10 KB: within the body limit of both routes
    started = time.perf_counter()
    response = await http.post(path, content=inner % (b"[" * depth + b"]" * depth), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert time.perf_counter() - started < 0.5


async def test_not_ready_is_503_with_retry_after(tmp_path: Path) -> None:
    app = build_app(Settings(artifacts_dir=tmp_path / "none"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cascade.test") as http:
        for path, body in (("/v1/recommend", {"user_id": 1}), ("/v1/feedback", {"events": [event()]})):
            response = await http.post(path, json=body)
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            assert "not ready" in response.json()["error"]


async def test_backend_down_is_503_naming_it(app: FastAPI, http: httpx.AsyncClient) -> None:
    app.state.feedback = Store(down=True)
    response = await http.post("/v1/feedback", json={"events": [event()]})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json() == {"error": "service unavailable: redis: Connection refused", "fields": []}


def test_every_public_route_documents_503_with_retry_after(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for path in ("/v1/recommend", "/v1/feedback", "/healthz", "/readyz"):
        for operation in paths[path].values():
            assert operation["responses"]["503"]["headers"]["Retry-After"]["required"] is True


async def test_a_label_needs_a_request_id_issued_to_the_events_user(http: httpx.AsyncClient) -> None:
    """Labels are kept only for answers the service gave (signed request ids, cascade.request_ids)."""
    good = await http.post("/v1/feedback", json={"events": [event(request_id="issued-to-1")]})
    assert good.status_code == 200
    for forged in ("r", "issued-to-2"):  # made up, or another user's
        assert await refused_fields(http, "/v1/feedback", {"events": [event(request_id=forged)]}) == ["events.0.request_id"]
