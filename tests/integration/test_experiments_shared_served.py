"""Experiments changed through one orchestrator while two serve against one Redis and one Triton: the
other one's answers carry the new arms within a second, and an orchestrator started afterwards takes
them too (the board's experiments over CASCADE_EXPERIMENTS). The test clears the board's experiments
around itself, so other tests serve their own."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cascade.settings import Settings
from orchestrator.clients.operator_board import EXPERIMENTS_KEY
from tests.integration.conftest import cleared

pytestmark = pytest.mark.integration

ENV = [{"name": "env_ab", "arms": [{"name": "env", "weight": 1}]}]
SHARED = [{"name": "shared_ab", "arms": [
    {"name": "pinned", "weight": 1, "rerank_chain": [{"name": "truncate"}], "model_versions": {"rank": 1}},
    {"name": "plain", "weight": 1},
]}]
USERS = range(300, 316)


@pytest.fixture
def clean_board(configure, triton, redis_server) -> Iterator[Settings]:
    settings = configure(experiments=ENV)
    with cleared(settings, EXPERIMENTS_KEY):
        yield settings


async def arms(http: httpx.AsyncClient) -> set[tuple[str, str]]:
    """(experiment, arm) of the answers to USERS."""
    answers = [(await http.post("/v1/recommend", json={"user_id": u, "k": 5})).json() for u in USERS]
    assert [a["degraded"] for a in answers] == [[]] * len(answers)
    return {(a["experiment"]["name"], a["experiment"]["arm"]) for a in answers}


async def experiment_of(http: httpx.AsyncClient, user_id: int) -> str:
    return (await http.post("/v1/recommend", json={"user_id": user_id, "k": 5})).json()["experiment"]["name"]


def changes(text: str, outcome: str) -> float:
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "cascade_experiment_changes_total" and s.labels == {"outcome": outcome})


async def test_a_change_through_one_app_reaches_the_others(clean_board: Settings, serve) -> None:
    settings = clean_board
    async with serve(settings) as (_, http), serve(settings) as (_, other):
        assert (await other.get("/admin/experiments")).json() == {"source": "environment", "experiments": ENV}
        assert await arms(other) == {("env_ab", "env")}

        invalid = await http.put("/admin/experiments", json=[{"name": "e", "arms": [{"name": "a", "weight": 1}] * 2}])
        assert invalid.status_code == 422 and "duplicate arm name(s) ['a']" in invalid.json()["error"]
        unserved = [{"name": "e", "arms": [{"name": "a", "weight": 1, "model_versions": {"rank": 7}}]}]
        refused = await http.put("/admin/experiments", json=unserved)
        assert refused.status_code == 409 and "arm 'a': rank version 7" in refused.json()["error"]
        assert (await http.get("/admin/experiments")).json()["source"] == "environment"  # nothing changed

        changed = await http.put("/admin/experiments", json=SHARED)
        changed_at = time.monotonic()
        assert changed.status_code == 200, changed.text
        assert changed.json() == {"source": "shared", "experiments": SHARED}
        while (await experiment_of(other, USERS[0])) != "shared_ab":
            assert time.monotonic() - changed_at <= 1.0, "the other app did not follow within a second"
            await asyncio.sleep(0.02)
        followed_s = time.monotonic() - changed_at
        assert await arms(http) == await arms(other) == {("shared_ab", "pinned"), ("shared_ab", "plain")}
        assert (await other.get("/admin/experiments")).json() == {"source": "shared", "experiments": SHARED}
        assert (await other.get("/admin/models")).json()["rank"]["pinned"] == [1]
        text = (await http.get("/metrics")).text
    print(f"the other app served the new experiment {followed_s:.2f} s after the change")
    assert changes(text, "ok") == 1 and changes(text, "refused") == 2

    async with serve(settings) as (_, later):  # started afterwards, with ENV in its settings
        assert (await later.get("/admin/experiments")).json() == {"source": "shared", "experiments": SHARED}
        assert await arms(later) == {("shared_ab", "pinned"), ("shared_ab", "plain")}
