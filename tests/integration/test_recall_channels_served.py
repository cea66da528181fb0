"""Recall channels at serving time: quotas from the channel file, reload, cold start, trending from Redis."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as redis

from orchestrator.clients import keys

pytestmark = pytest.mark.integration

TIMESTAMP = 1_700_000_000
CONFIG = """
[[channel]]
name = "ann"
quota = {ann}
[[channel]]
name = "item_to_item"
quota = {i2i}
recent = 5
[[channel]]
name = "popular"
quota = {popular}

[cold_start]
channels = ["popular"]
explore_new_items = {explore}
"""


def write_config(path: Path, ann: int = 60, i2i: int = 20, popular: int = 10, explore: int = 4) -> Path:
    path.write_text(CONFIG.format(ann=ann, i2i=i2i, popular=popular, explore=explore))
    return path


def channel_counts(cands) -> dict[str, int]:
    return {n: int((cands.channels == i).sum()) for i, n in enumerate(cands.channel_names)}


@pytest.fixture
def recall_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "recall.toml")


def users_with_history(funnel, n: int) -> list[int]:
    history = funnel.resources.user_history
    return [int(u) for u in np.flatnonzero((history >= 0).sum(axis=1) >= 3)[:n]]


async def test_quotas_respected_and_reload_swaps_them(configure, serve, redis_server, recall_config: Path) -> None:
    async with serve(configure(recall_config=recall_config)) as (app, http):
        funnel = app.state.funnel
        assert funnel.resources.channels.item_to_item is not None  # the export wrote artifacts/item_to_item.npz
        i2i_seen = 0
        for user in users_with_history(funnel, 10):
            counts = channel_counts(await funnel.recall(user, funnel.resources.history_of(user), TIMESTAMP))
            assert counts["ann"] == 60 and counts["item_to_item"] <= 20 and counts["popular"] <= 10
            i2i_seen += counts["item_to_item"]
        assert i2i_seen > 0

        write_config(recall_config, ann=30, i2i=5, popular=0)
        response = await http.post("/admin/reload-recall")
        assert response.status_code == 200, response.text
        assert response.json()["channels"] == [
            {"name": "ann", "quota": 30}, {"name": "item_to_item", "quota": 5}, {"name": "popular", "quota": 0},
        ]
        user = users_with_history(funnel, 1)[0]
        counts = channel_counts(await funnel.recall(user, funnel.resources.history_of(user), TIMESTAMP))
        assert counts["ann"] == 30 and counts["item_to_item"] <= 5 and "popular" not in counts

        recall_config.write_text("[[channel]]\nname = 'ann'\nquota = 'many'\n")
        response = await http.post("/admin/reload-recall")
        assert response.status_code == 422
        assert "channel[0].quota" in response.json()["error"] and str(recall_config) in response.json()["error"]
        assert funnel.resources.channels.describe()["channels"][0] == {"name": "ann", "quota": 30}  # old one kept


async def test_a_reload_asked_of_one_process_reaches_the_others(configure, serve, redis_server, recall_config: Path) -> None:
    """Two apps on one Redis stand for two orchestrator processes: the one that took the call re-reads
    the file at once, the other within a poll (CASCADE_VERSIONS_POLL_S); a rejected file reaches nobody."""
    settings = configure(recall_config=recall_config)
    async with serve(settings) as (_, http), serve(settings) as (other_app, _):
        other = other_app.state.funnel.resources.channels
        assert other.describe()["channels"][0] == {"name": "ann", "quota": 60}
        write_config(recall_config, ann=30, i2i=5, popular=0)
        response = await http.post("/admin/reload-recall")
        assert response.status_code == 200, response.text
        asked = time.monotonic()
        while other.describe()["channels"][0]["quota"] != 30:
            assert time.monotonic() - asked <= 1.0, "the other process did not re-read the recall config within 1 s"
            await asyncio.sleep(0.02)
        recall_config.write_text("[[channel]]\nname = 'ann'\nquota = 'many'\n")
        assert (await http.post("/admin/reload-recall")).status_code == 422
        await asyncio.sleep(2 * settings.versions_poll_s)
        assert other.describe()["channels"][0] == {"name": "ann", "quota": 30}  # not told: the old one stays


async def test_cold_start_user_gets_only_cold_start_channels(
    configure, serve, triton, redis_server, recall_config: Path
) -> None:
    async with serve(configure(recall_config=recall_config)) as (app, http):
        funnel = app.state.funnel
        new_items = set(np.flatnonzero(funnel.resources.tables.item_positives == 0).tolist())
        cold_user = funnel.resources.tables.n_users + 4_321  # no test gives this user clicks (live clicks end cold start)
        cands = await funnel.recall(cold_user, None, TIMESTAMP)
        counts = channel_counts(cands)
        assert set(counts) == {"popular", "explore"} and counts["popular"] == 10
        assert counts["explore"] == min(4, len(new_items)) > 0
        assert set(cands.item_ids[cands.channels == cands.channel_names.index("explore")].tolist()) <= new_items
        body = (await http.post("/v1/recommend", json={"user_id": cold_user, "k": 14})).json()
        assert body["cold_start"] is True
        assert {i["channel"] for i in body["items"]} <= {"popular", "explore"}


async def test_trending_from_redis_leads_the_popular_channel(configure, serve, redis_server, recall_config: Path) -> None:
    settings = configure(recall_config=recall_config)
    client = redis.from_url(settings.effective_redis_url)
    try:
        await client.delete(keys.POPULAR)
        await client.zadd(keys.POPULAR, {"1999": 5.0, "1500": 9.0, "1234": 1.0})
        async with serve(settings) as (app, _):
            channels = app.state.funnel.resources.channels
            await channels.refresh_trending()
            cands = await app.state.funnel.recall(settings.n_users + 1, None, TIMESTAMP)
            popular = cands.item_ids[cands.channels == cands.channel_names.index("popular")]
            assert popular[:3].tolist() == [1500, 1999, 1234] and len(popular) == 10  # topped up offline
    finally:
        await client.delete(keys.POPULAR)
        await client.aclose()
