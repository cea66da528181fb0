"""Stage failures degrade, never fail, the request: Triton down, Redis down, stages out of time.

The outage tests start their own tritonserver / redis-server on free ports and their own app, so
stopping them disturbs no other test.
"""
from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from cascade.servers.process import ManagedProcess, free_port
from cascade.servers.redis import start_redis
from cascade.servers.triton import start_triton
from cascade.settings import Settings

pytestmark = pytest.mark.integration
TIMESTAMP = int(time.time())  # fixed for the session, within the window the API accepts
RECOVERY_S = 30.0


class Restartable:
    """A server this test stops and starts again, on the same ports."""

    def __init__(self, start: Callable[[], ManagedProcess]) -> None:
        self._start, self.process = start, None

    async def start(self) -> None:
        self.process = await asyncio.to_thread(self._start)

    async def stop(self) -> None:
        if self.process is not None:
            process, self.process = self.process, None
            await asyncio.to_thread(process.stop)

    async def kill(self) -> None:
        """SIGKILL the server and its children (its process group): no shutdown of any kind."""
        process, self.process = self.process, None
        os.killpg(process.pid, signal.SIGKILL)
        await asyncio.to_thread(process.stop, 1.0)  # reaps it and closes its log


@pytest.fixture
async def own_triton(exported: Settings, configure, tmp_path: Path) -> AsyncIterator[tuple[Settings, Restartable]]:
    s = configure(triton_http_port=free_port(), triton_grpc_port=free_port(), triton_metrics_port=free_port())
    server = Restartable(lambda: start_triton(
        [s.model_repository, s.ensemble_repository], tmp_path, s.triton_host,
        s.triton_http_port, s.triton_grpc_port, s.triton_metrics_port,
    ))
    await server.start()
    try:
        yield s, server
    finally:
        await server.stop()


@pytest.fixture
async def own_redis(configure, tmp_path: Path) -> AsyncIterator[tuple[Settings, Restartable]]:
    port = free_port()
    server = Restartable(lambda: start_redis(port, tmp_path))
    await server.start()
    try:
        yield configure(redis_url=f"redis://127.0.0.1:{port}/0"), server
    finally:
        await server.stop()


async def recommend(http: httpx.AsyncClient, user_id: int, k: int) -> dict:
    response = await http.post("/v1/recommend", json={"user_id": user_id, "k": k, "context": {"timestamp": TIMESTAMP}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len({item["item_id"] for item in body["items"]}) == k
    return body


async def until_healthy(http: httpx.AsyncClient, user_ids: range, k: int) -> dict:
    """Poll, one fresh user per request, until an answer is not degraded; fail after RECOVERY_S."""
    deadline = time.monotonic() + RECOVERY_S
    for user_id in user_ids:
        body = await recommend(http, user_id, k)
        if body["degraded"] == [] or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.2)
    return body


async def recall_head(app: FastAPI, user_id: int, n: int) -> set[int]:
    """The first `n` recall candidates of a user with no exposure yet: what the funnel keeps without Triton."""
    funnel = app.state.funnel
    return set((await funnel.recall(user_id, funnel.resources.history_of(user_id), TIMESTAMP)).item_ids[:n].tolist())


async def test_triton_down_answers_from_recall_then_recovers(own_triton, redis_server, serve) -> None:
    settings, triton = own_triton
    k = 10
    async with serve(settings) as (app, http):
        assert (await recommend(http, 260, k))["degraded"] == []
        await triton.stop()

        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["triton"]["ready"] is False
        for user_id in (261, 262):
            body = await recommend(http, user_id, k)
            assert body["degraded"] == [
                {"stage": "prerank", "reason": "unavailable"}, {"stage": "rank", "reason": "unavailable"},
            ]
            ids = {item["item_id"] for item in body["items"]}
            assert ids <= await recall_head(app, user_id, settings.rank_keep)
            assert {item["channel"] for item in body["items"]} <= {"ann", "popular"}

        await triton.start()
        assert (await until_healthy(http, range(263, 300), k))["degraded"] == []
        assert (await http.get("/readyz")).status_code == 200


async def test_redis_down_serves_unfiltered_then_recovers(own_redis, triton, serve) -> None:
    settings, redis = own_redis
    k = 8
    async with serve(settings) as (_, http):
        first = await recommend(http, 40, k)
        assert first["degraded"] == []
        await redis.stop()

        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["redis"] == {"ready": False}
        assert ready.json()["triton"]["ready"] is True
        body = await recommend(http, 41, k)
        assert body["degraded"] == [
            {"stage": "exposure_filter", "reason": "unavailable"}, {"stage": "exposure_write", "reason": "unavailable"},
        ]
        # look-alike: the seeds' exported embeddings and places stand in; a location cannot be kept
        near = {"lat": 0.0, "lon": 0.0, "radius_km": 50}
        audience = await http.post("/v1/lookalike", json={"seed_user_ids": [3, 8], "k": 5, "near": near})
        assert audience.status_code == 200 and audience.json()["scored_by"] == "model"
        assert {"stage": "seeds", "reason": "unavailable"} in audience.json()["degraded"]
        moved = await http.post("/v1/users/3/location", json={"lat": 48.85, "lon": 2.35})
        assert moved.status_code == 503 and moved.json()["error"].startswith("service unavailable: redis")
        assert moved.headers["Retry-After"]

        await redis.start()
        assert (await until_healthy(http, range(42, 100), k))["degraded"] == []
        assert (await http.get("/readyz")).status_code == 200
        again = await recommend(http, 40, k)  # the restarted Redis is empty: nothing to filter, then filtering works
        third = await recommend(http, 40, k)
        assert {i["item_id"] for i in again["items"]}.isdisjoint(i["item_id"] for i in third["items"])


@pytest.mark.parametrize(("two_stage", "budgets", "skipped"), [
    (False, {"rank": 0.01}, ["rank"]),  # two calls: rank alone runs out, pre-rank's scores stand
    (True, {"prerank": 0.005, "rank": 0.005}, ["prerank", "rank"]),  # one call under both budgets: both skipped
])
async def test_stage_over_its_budget_is_skipped_with_timeout(
    configure, triton, redis_server, serve, two_stage: bool, budgets: dict[str, float], skipped: list[str],
) -> None:
    settings = configure(stage_budgets_ms=budgets, deadline_slack=False, two_stage=two_stage)
    async with serve(settings) as (app, http):
        for user_id in (120, 121, settings.n_users + 5):
            body = await recommend(http, user_id, 12)
            assert body["degraded"] == [{"stage": stage, "reason": "timeout"} for stage in skipped]
            assert body["scored_by"] == ("none" if two_stage else "prerank")
        # The late calls were left to finish, not cancelled (a cancelled call can crash Triton 2.51):
        # they end on their own.
        scorer = app.state.funnel.scorer
        deadline = time.monotonic() + 10
        while scorer._abandoned:
            assert time.monotonic() < deadline, f"{len(scorer._abandoned)} abandoned Triton calls never finished"
            await asyncio.sleep(0.05)
        assert (await http.get("/readyz")).json()["triton"]["ready"] is True


async def test_spent_request_deadline_skips_every_waiting_stage(configure, triton, redis_server, serve) -> None:
    settings = configure(
        request_deadline_ms=0.05, admission_wait_ms=0.0, stage_budgets_ms={stage: 0.005 for stage in configure().stage_budgets_ms},
    )
    async with serve(settings) as (_, http):
        body = await recommend(http, 130, 10)
        skipped = ["exposure_filter", "prerank", "rank", "exposure_write"]
        assert body["degraded"] == [{"stage": stage, "reason": "timeout"} for stage in skipped]
        assert {item["channel"] for item in body["items"]} <= {"ann", "popular"}
        assert np.isfinite([item["score"] for item in body["items"]]).all()


async def test_triton_killed_under_load_every_request_is_answered_and_normal_within_5s(own_triton, redis_server, serve) -> None:
    """SIGKILL to tritonserver while 4 clients keep asking: every request gets a 200 (those without
    Triton say prerank and rank were skipped), and answers are whole again within 5 s of Triton
    being ready after its restart."""
    settings, triton = own_triton
    answers: list[tuple[float, int, list]] = []  # (time, status, degraded)
    stop = asyncio.Event()

    async with serve(settings) as (_, http):
        async def client(first_user: int) -> None:
            user = first_user
            while not stop.is_set():
                response = await http.post(
                    "/v1/recommend", json={"user_id": user % 300, "k": 5, "context": {"timestamp": TIMESTAMP}}
                )
                answers.append((time.monotonic(), response.status_code, response.json().get("degraded") if response.status_code == 200 else None))
                user += 4
                await asyncio.sleep(0.01)

        clients = [asyncio.create_task(client(i)) for i in range(4)]
        await asyncio.sleep(1.0)
        killed_at = time.monotonic()
        await triton.kill()
        await asyncio.sleep(2.0)
        restarted_at = time.monotonic()
        await triton.start()  # returns once tritonserver reports ready (it may answer a little before)
        ready_at = time.monotonic()
        while time.monotonic() - ready_at < 10.0:
            if any(t > ready_at and d == [] for t, _, d in answers[-8:]):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*clients)

    statuses = {status for _, status, _ in answers}
    during = [d for t, _, d in answers if killed_at + 0.5 < t < restarted_at]  # Triton dead, not yet restarting
    normal_at = min(t for t, _, d in answers if t > restarted_at and d == [])
    print(f"{len(answers)} requests, statuses {statuses}, {len(during)} answered without Triton (all degraded: "
          f"{all(d for d in during)}), normal {normal_at - ready_at:.2f} s after Triton was ready")
    odd = [d for d in during if not any(s["stage"] == "rank" for s in d)]
    assert statuses == {200}
    assert during and not odd, odd[:3]  # each says rank was skipped (unavailable, or a timeout while it died)
    assert normal_at - ready_at <= 5.0
