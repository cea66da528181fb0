"""The orchestrator on a real 3-node Redis Cluster that the tests start (`redis_cluster`): users'
keys spread over the nodes, each user's read and write on one node, feedback applied exactly once
across nodes, trending, the samples export, the operator board and the rate limit all on the cluster."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from cascade.feedback import Event
from cascade.settings import Settings
from orchestrator.clients import keys
from orchestrator.clients.exposure import ExposureStore
from orchestrator.clients.feedback import FeedbackLimits, FeedbackStore
from orchestrator.export_samples import export_samples

pytestmark = pytest.mark.integration
NOW = int(time.time())
LIMITS = FeedbackLimits(3_600, 3_600, 100, 3_600, 100, 86_400.0, 3_600)


@pytest.fixture
async def cluster(redis_cluster: str) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster, decode_responses=True)
    await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    try:
        yield client
    finally:
        await client.aclose()


def users_on_every_node(cluster: RedisCluster, per_node: int = 2) -> list[int]:
    """Users whose keys live on each of the nodes, `per_node` each."""
    by_node: dict[str, list[int]] = {}
    user = 0
    while len(by_node) < 3 or min(len(v) for v in by_node.values()) < per_node:
        node = cluster.get_node_from_key(keys.sequence(user)).name
        by_node.setdefault(node, []).append(user)
        user += 1
    return [u for users in by_node.values() for u in users[:per_node]]


async def test_each_users_exposure_lives_on_one_node_and_reads_back(redis_cluster: str, cluster: RedisCluster) -> None:
    store = ExposureStore(redis_cluster, ttl_s=600, max_items=50, cluster=True)
    try:
        users = users_on_every_node(cluster)
        for n, user in enumerate(users):
            await store.record_served(user, np.arange(n, n + 5, dtype=np.int64))
        for n, user in enumerate(users):
            state = await store.user_state(user)
            assert sorted(state.exposed.tolist()) == list(range(n, n + 5))
        per_node = [await cluster.dbsize(target_nodes=node) for node in cluster.get_primaries()]
        assert len(per_node) == 3 and min(per_node) > 0
        assert await store.ping()
    finally:
        await store.close()


def click(n: int, user: int, item: int) -> Event:
    return Event(f"c{n}", user, item, "click", NOW, "r")


async def test_feedback_across_nodes_is_applied_exactly_once(cluster: RedisCluster) -> None:
    store = FeedbackStore(cluster, LIMITS)
    users = users_on_every_node(cluster, per_node=1)
    batch = [click(n, user, item=100 + n) for n, user in enumerate(users)]
    batch.append(Event("i1", users[0], 7, "impression", NOW, "r"))
    assert await store.record(batch) == [True] * len(batch)
    assert await store.record(batch) == [False] * len(batch)  # a replay: all duplicates, nothing applied again
    for n, user in enumerate(users):
        assert await cluster.lrange(keys.sequence(user), 0, -1) == [str(100 + n)]
        assert await cluster.hgetall(keys.labels(user, "r")) == (
            {f"clicks:{100 + n}": "1", "impressions:7": "1"} if n == 0 else {f"clicks:{100 + n}": "1"}
        )
    trending = await cluster.zrange(keys.POPULAR, 0, -1, withscores=True)
    assert sorted(int(item) for item, _ in trending) == [100 + n for n in range(len(users))]
    assert all(score == pytest.approx(trending[0][1]) for _, score in trending)  # one click each, once


async def test_concurrent_overlapping_batches_over_nodes_apply_each_event_once(cluster: RedisCluster) -> None:
    store = FeedbackStore(cluster, LIMITS)
    users = users_on_every_node(cluster, per_node=1)
    batches = [[click(n, users[n % 3], item=n) for n in range(start, start + 20)] for start in range(0, 100, 10)]
    results = await asyncio.gather(*(store.record(b) for b in batches))
    assert sum(sum(r) for r in results) == 110  # 110 distinct (user, id) pairs, each accepted by one call
    sequences = [await cluster.lrange(keys.sequence(u), 0, -1) for u in users]
    assert sorted(int(i) for s in sequences for i in s) == list(range(110))
    trending = await cluster.zrange(keys.POPULAR, 0, -1, withscores=True)
    assert len(trending) == 110 and all(score == pytest.approx(trending[0][1]) for _, score in trending)  # once each


@pytest.fixture
def on_cluster(configure, redis_cluster: str, tmp_path: Path) -> Settings:
    return configure(redis_url=redis_cluster, redis_cluster=True, run_dir=tmp_path / "run")


async def test_the_orchestrator_serves_learns_and_exports_on_the_cluster(
    on_cluster: Settings, cluster: RedisCluster, serve, triton, tmp_path: Path
) -> None:
    async with serve(on_cluster) as (app, http):
        assert (await http.get("/readyz")).status_code == 200
        users = users_on_every_node(cluster, per_node=1)
        answers = {}
        for user in users:
            response = await http.post("/v1/recommend", json={"user_id": user, "k": 5})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["degraded"] == [] and body["scored_by"] == "rank"
            answers[user] = body
        events = [
            {"event_id": uuid.uuid4().hex, "request_id": answers[u]["request_id"], "user_id": u,
             "item_id": answers[u]["items"][0]["item_id"], "type": "click"}
            for u in users
        ]
        response = await http.post("/v1/feedback", json={"events": events})
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == len(users)
        for user in users:  # what was served is not served again (the short-term exposure, on the user's node)
            again = (await http.post("/v1/recommend", json={"user_id": user, "k": 5})).json()
            assert not {i["item_id"] for i in again["items"]} & {i["item_id"] for i in answers[user]["items"]}
        await app.state.funnel.resources.channels.refresh_trending()  # {trending}'s two keys in one transaction
        clicked = {e["item_id"] for e in events}
        assert clicked <= set(app.state.funnel.resources.channels.popular[0].tolist())
        board = app.state.funnel.board
        await board.write("rank", app.state.funnel.versions.active["rank"])
        assert (await board.read())["rank"] == app.state.funnel.versions.active["rank"]
    await asyncio.sleep(0.1)
    result = await asyncio.to_thread(export_samples, on_cluster, tmp_path / "samples.parquet")
    assert result["samples"] == 2 * len(users) and result["positives"] == len(users)


async def test_keys_of_one_user_share_a_slot_on_the_real_cluster(cluster: RedisCluster) -> None:
    user = 42
    for key in (keys.short_exposure(user), keys.long_exposure(user), keys.sequence(user), keys.labels(user, "r")):
        await cluster.set(key, "x")
    slots = {key_slot(k.encode()) for k in await cluster.keys("*", target_nodes=RedisCluster.PRIMARIES)}
    assert slots == {key_slot(b"{u42}")}


async def test_lookalike_places_and_live_embeddings_work_on_the_cluster(redis_cluster: str, cluster: RedisCluster) -> None:
    from cascade.lookalike.users import UserSide, UserTable
    from orchestrator.clients.audience import LiveEmbeddings, Places

    store = ExposureStore(redis_cluster, ttl_s=600, max_items=50, cluster=True)
    try:
        lat, lon = np.array([40.0, 40.01, 45.0, np.nan]), np.array([-74.0, -74.0, -74.0, 0.0])
        table = UserTable(UserSide(np.zeros((4, 2), np.float32), np.zeros((4, 3), np.int64), np.zeros((4, 1), np.float32)), lat, lon)
        places = Places(store.redis, store.batches)
        assert await places.fill(table, "v1") == 3 and await places.fill(table, "v1") == 0  # once per table
        users, km = await places.nearby(40.0, -74.0, 5.0, 10)
        assert users.tolist() == [0, 1] and km[0] < 0.01 and 1.0 < km[1] < 1.2
        await places.put(2, 40.0, -74.001)
        assert (await places.nearby(40.0, -74.0, 5.0, 10))[0].tolist() == [0, 2, 1]
        live = LiveEmbeddings(store.redis, ttl_s=60)
        spread = users_on_every_node(cluster, per_node=1)  # their keys on each node
        await live.put(np.array(spread), np.eye(len(spread), 2, dtype=np.float32))
        got = await live.get(np.array([*spread, 10_000]), 2)
        assert sorted(got) == sorted(spread) and got[spread[0]].tolist() == [1.0, 0.0]
        await live.mark(spread)
        assert sorted((await live.take(10)).tolist()) == sorted(spread) and len(await live.take(10)) == 0
    finally:
        await store.close()
