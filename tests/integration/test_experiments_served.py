"""CASCADE_EXPERIMENTS: users split deterministically between arms, each arm's rerank chain and pinned versions."""
from __future__ import annotations

from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

EXPERIMENTS = [{"name": "rerank_ab", "arms": [
    {"name": "diverse", "weight": 1, "rerank_chain": [{"name": "cap_per_category", "limit": 1}, {"name": "truncate"}],
     "model_versions": {"prerank": 1, "rank": 1}},
    {"name": "plain", "weight": 1, "rerank_chain": [{"name": "truncate"}]},
]}]


def samples(text: str, name: str) -> dict[tuple, float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples if s.name == name
    }


async def test_arms_split_users_and_apply_their_chains(configure, triton, redis_server, serve) -> None:
    users = list(range(300, 316))
    arms: dict[int, str] = {}
    async with serve(configure(experiments=EXPERIMENTS)) as (_, http):
        for repeat in range(2):
            for user_id in users:
                body = (await http.post("/v1/recommend", json={"user_id": user_id, "k": 10})).json()
                assert body["degraded"] == []
                assert body["experiment"]["name"] == "rerank_ab"
                arm = body["experiment"]["arm"]
                assert arms.setdefault(user_id, arm) == arm  # the same arm on repeat
                if arm == "diverse":
                    assert max(Counter(item["category"] for item in body["items"]).values()) <= 1
                    assert body["model_versions"]["prerank"] == 1 and body["model_versions"]["rank"] == 1
                else:
                    assert len(body["items"]) == 10
        text = (await http.get("/metrics")).text
    per_arm = Counter(arms.values())
    assert set(per_arm) == {"diverse", "plain"}
    assert samples(text, "cascade_requests_by_arm_total") == {
        (("arm", arm), ("experiment", "rerank_ab")): 2.0 * n for arm, n in per_arm.items()
    }
    # every stage series is split by arm
    stages = samples(text, "cascade_stage_duration_seconds_count")
    for arm, n in per_arm.items():
        assert stages[(("arm", arm), ("stage", "rerank"))] == 2.0 * n
    triton = samples(text, "cascade_triton_request_duration_seconds_count")
    # one Triton call per answer: the two-stage model of (pre-rank 1, rank 1)
    assert triton[(("arm", "diverse"), ("pipeline", "two_stage"), ("version", "p1_r1"))] == 2.0 * per_arm["diverse"]


async def test_without_experiments_the_arm_is_none(client) -> None:
    body = (await client.post("/v1/recommend", json={"user_id": 42, "k": 5})).json()
    assert body["experiment"] is None
    text = (await client.get("/metrics")).text
    assert samples(text, "cascade_requests_by_arm_total")[(("arm", "none"), ("experiment", "none"))] >= 1
