"""GET /metrics: Prometheus exposition of the funnel's stages, recall channels, Triton calls and degradations."""
from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cascade.settings import Settings

pytestmark = pytest.mark.integration
STAGES = ("recall", "exposure_filter", "prerank+rank", "rerank", "exposure_write")  # one call pre-ranks and ranks


def samples(text: str, name: str) -> dict[tuple, float]:
    """{sorted label pairs: value} of every sample called `name`."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples if s.name == name
    }


async def test_metrics_after_requests(client: httpx.AsyncClient, exported: Settings) -> None:
    for user_id in (20, 21, exported.n_users + 1):
        assert (await client.post("/v1/recommend", json={"user_id": user_id, "k": 5})).status_code == 200
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text

    none = ("arm", "none")  # without experiments every series has arm="none"
    stage_counts = samples(text, "cascade_stage_duration_seconds_count")
    assert all(stage_counts[(none, ("stage", stage))] >= 3 for stage in STAGES)
    buckets = samples(text, "cascade_stage_duration_seconds_bucket")
    assert buckets[(none, ("le", "0.005"), ("stage", "rerank"))] >= 1  # ms-scale buckets
    channels = samples(text, "cascade_recall_candidates_total")
    assert channels[(none, ("channel", "ann"))] > 0 and channels[(none, ("channel", "popular"))] > 0
    sizes = samples(text, "cascade_stage_candidates_sum")
    assert sizes[(none, ("direction", "out"), ("stage", "prerank"))] <= sizes[(none, ("direction", "in"), ("stage", "prerank"))]
    assert sizes[(none, ("direction", "out"), ("stage", "rank"))] <= sizes[(none, ("direction", "in"), ("stage", "rank"))]
    triton = samples(text, "cascade_triton_request_duration_seconds_count")
    assert triton[(none, ("pipeline", "two_stage"), ("version", "p1_r1"))] >= 3
    assert samples(text, "cascade_exposure_checked_total")[(none,)] > 0
    assert samples(text, "cascade_exposure_filter_ratio_count")[(none,)] >= 3
    assert samples(text, "cascade_http_requests_total")[(("path", "/v1/recommend"), ("status", "200"))] >= 3
    assert samples(text, "cascade_model_active_version") == {(("scorer", "prerank"),): 1.0, (("scorer", "rank"),): 1.0}


async def test_feedback_and_reloads_are_counted(configure, triton, redis_server, serve) -> None:
    events = [
        {"event_id": f"m{n}", "request_id": "", "user_id": 1, "item_id": n, "type": kind}
        for n, kind in enumerate(("impression", "impression", "click"))
    ]
    async with serve(configure()) as (_, http):
        assert (await http.post("/v1/feedback", json={"events": events})).json() == {"accepted": 3, "duplicates": 0}
        assert (await http.post("/v1/feedback", json={"events": events[:1]})).json() == {"accepted": 0, "duplicates": 1}
        assert (await http.post("/admin/reload-recall")).status_code == 200
        text = (await http.get("/metrics")).text
    assert samples(text, "cascade_feedback_events_total") == {
        (("outcome", "accepted"), ("type", "impression")): 2.0, (("outcome", "accepted"), ("type", "click")): 1.0,
        (("outcome", "duplicate"), ("type", "impression")): 1.0,
    }
    assert samples(text, "cascade_recall_config_reloads_total") == {(("outcome", "ok"),): 1.0}


async def test_degradation_is_counted(configure, triton, redis_server, serve) -> None:
    settings = configure(stage_budgets_ms={"rank": 0.01}, deadline_slack=False, two_stage=False)  # rank's own call
    async with serve(settings) as (_, http):
        for user_id in (140, 141):
            body = (await http.post("/v1/recommend", json={"user_id": user_id, "k": 5})).json()
            assert body["degraded"] == [{"stage": "rank", "reason": "timeout"}]
        text = (await http.get("/metrics")).text
    assert samples(text, "cascade_degradations_total") == {(("arm", "none"), ("reason", "timeout"), ("stage", "rank")): 2.0}
    errors = samples(text, "cascade_triton_errors_total")
    assert errors[(("arm", "none"), ("pipeline", "rank_pipeline"), ("reason", "timeout"), ("version", "1"))] == 2.0
