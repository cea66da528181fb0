"""A new rank version published and activated while requests flow through two orchestrator
processes' worth of apps: no request fails, traffic moves in the one that took the call and, within
a second, in the other (the shared versions in Redis).

The test runs its own tritonserver on a copy of the repositories (publishing writes into them), and
its own orchestrators, so no other test sees the new version; it clears the shared versions around.
"""
from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cascade.artifacts import ArtifactPaths
from cascade.servers.process import free_port
from cascade.servers.triton import start_triton
from cascade.settings import Settings
from export.publish import publish
from orchestrator.clients.operator_board import ACTIVE_VERSIONS_KEY
from tests.integration.conftest import cleared

pytestmark = pytest.mark.integration
CLIENTS = 4


@pytest.fixture
async def switchable(configure, exported: Settings, redis_server, tmp_path) -> AsyncIterator[Settings]:
    models, ensembles = tmp_path / "model_repository", tmp_path / "ensemble"
    shutil.copytree(exported.model_repository, models)
    shutil.copytree(exported.ensemble_repository, ensembles)
    settings = configure(
        model_repository=models, ensemble_repository=ensembles, run_dir=tmp_path / "run",
        triton_http_port=free_port(), triton_grpc_port=free_port(), triton_metrics_port=free_port(),
    )
    process = await asyncio.to_thread(
        start_triton, [models, ensembles], settings.run_dir, settings.triton_host,
        settings.triton_http_port, settings.triton_grpc_port, settings.triton_metrics_port,
    )
    try:
        with cleared(settings, ACTIVE_VERSIONS_KEY):
            yield settings
    finally:
        await asyncio.to_thread(process.stop)


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"{name}{labels} not in /metrics")


async def test_a_published_version_takes_traffic_without_a_failed_request(switchable: Settings, serve) -> None:
    settings = switchable
    answers: list[tuple[float, int, list, int]] = []  # (sent at, status, degraded, rank version): the switching app
    others: list[tuple[float, int, list, int]] = []  # the same from the app that follows
    stop = asyncio.Event()

    async def user_loop(http: httpx.AsyncClient, first_user: int, into: list) -> None:
        user = first_user
        while not stop.is_set():
            sent = time.monotonic()
            response = await http.post("/v1/recommend", json={"user_id": user % 300, "k": 10})
            body = response.json()
            into.append((sent, response.status_code, body.get("degraded"), body.get("model_versions", {}).get("rank")))
            user += CLIENTS

    async def followed(http: httpx.AsyncClient) -> float:
        """When `http`'s app has rank version 3 active (time.monotonic())."""
        while (await http.get("/admin/models")).json()["rank"]["active"] != 3:
            await asyncio.sleep(0.02)
        return time.monotonic()

    async with serve(settings) as (_, http), serve(settings) as (_, other):
        assert (await http.get("/admin/models")).json()["rank"] == {"active": 1, "pinned": [], "servable": [1]}
        loops = [asyncio.create_task(user_loop(app, n, into)) for n in range(CLIENTS // 2)
                 for app, into in ((http, answers), (other, others))]
        try:
            await asyncio.sleep(1.0)
            # The student quantized to INT8 is the "retrained" model: same inputs, slightly different scores.
            # Two versions are published (2 is never activated), then 3 takes the traffic from 1.
            paths = ArtifactPaths(settings.artifacts_dir)
            assert await asyncio.to_thread(publish, settings, "rank", paths.onnx("rank.int8dyn")) == 2
            assert await asyncio.to_thread(publish, settings, "rank", paths.onnx("rank.int8")) == 3
            refused = await http.post("/admin/models/rank/activate", json={"version": 7})
            assert refused.status_code == 409 and "could not load rank version 7" in refused.json()["error"]
            started = time.monotonic()
            switched = await http.post("/admin/models/rank/activate", json={"version": 3})
            switched_at = time.monotonic()
            assert switched.status_code == 200, switched.text
            assert switched.json() == {"scorer": "rank", "version": 3, "previous": 1}
            other_switched_at = await asyncio.wait_for(followed(other), timeout=5.0)
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.gather(*loops)
        models = (await http.get("/admin/models")).json()
        text = (await http.get("/metrics")).text
        other_text = (await other.get("/metrics")).text

    statuses = Counter(status for _, status, _, _ in answers)
    degraded = [d for _, _, d, _ in answers if d]
    before = Counter(v for t, _, _, v in answers if t < started)
    during = Counter(v for t, _, _, v in answers if started <= t <= switched_at)
    after = Counter(v for t, _, _, v in answers if t > switched_at)
    print(f"{len(answers)} answers, statuses {dict(statuses)}; rank versions of requests sent before the switch "
          f"{dict(before)}, during it {dict(during)}, after it {dict(after)}; the switch (load, warm-up, move) took "
          f"{switched_at - started:.2f} s")
    assert statuses == {200: len(answers)} and degraded == []
    assert before == {1: before[1]} and before[1] > 0
    assert after == {3: after[3]} and after[3] > 0
    follow_s = other_switched_at - switched_at
    other_before = Counter(v for t, _, _, v in others if t < started)
    other_after = Counter(v for t, _, _, v in others if t > other_switched_at)
    print(f"the other app: {len(others)} answers, statuses {dict(Counter(s for _, s, _, _ in others))}; followed "
          f"{follow_s:.2f} s after the switch; rank versions before {dict(other_before)}, after {dict(other_after)}")
    assert [s for _, s, d, _ in others if s != 200 or d] == []
    # Two poll periods, plus a request's time on a busy machine: the switch is seen by the first
    # answer after the poll, and one CI run (other work on the 2 cores) measured 1.18 s.
    assert follow_s <= 2 * settings.versions_poll_s + 0.5
    assert other_before == {1: other_before[1]} and other_after == {3: other_after[3]} and other_after[3] > 0
    assert metric(other_text, "cascade_model_active_version", scorer="rank") == 3
    # The previous version stays servable for a rollback; 2 was published but never activated, so its
    # pinned pipeline was never loaded.
    assert models["rank"] == {"active": 3, "pinned": [], "servable": [1, 3]}
    assert metric(text, "cascade_model_active_version", scorer="rank") == 3
    assert metric(text, "cascade_model_version_switches_total", scorer="rank", outcome="ok") == 1
    assert metric(text, "cascade_model_version_switches_total", scorer="rank", outcome="refused") == 1
    # publishing wrote the pair's two-stage model; the switch loaded it, so the new traffic made one call each
    one_call = metric(text, "cascade_triton_request_duration_seconds_count", pipeline="two_stage", version="p1_r3", arm="none")
    assert one_call >= after[3]
