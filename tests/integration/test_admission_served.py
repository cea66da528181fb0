"""The door against real servers: beyond capacity requests are shed with 503 + Retry-After, and every
answer that does come back is fully scored."""
from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration


async def test_overload_is_shed_never_answered_unscored(configure, triton, redis_server, serve) -> None:
    settings = configure(max_in_flight=1, admission_wait_ms=0.0)
    async with serve(settings) as (_, http):
        responses = await asyncio.gather(
            *(http.post("/v1/recommend", json={"user_id": 200 + i, "k": 5}) for i in range(12))
        )
        shed = [r for r in responses if r.status_code == 503]
        answered = [r.json() for r in responses if r.status_code == 200]
        assert len(shed) + len(answered) == 12 and shed and answered
        assert all(r.headers["retry-after"] == "1" and "overloaded" in r.json()["error"] for r in shed)
        assert all(a["scored_by"] == "rank" and a["degraded"] == [] for a in answered)
        metrics = (await http.get("/metrics")).text
        counted = {f.name: f.samples[0].value for f in text_string_to_metric_families(metrics) if f.name == "cascade_shed_requests"}
        assert counted["cascade_shed_requests"] == len(shed)
        again = await http.post("/v1/recommend", json={"user_id": 250, "k": 5})  # the door is open again
        assert again.status_code == 200
