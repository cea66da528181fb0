"""POST /v1/feedback end to end: idempotency, the long-term exposure buffer, live clicks in the funnel."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
import redis.asyncio as redis

from cascade.artifacts import ArtifactPaths
from cascade.features import FeatureTables
from cascade.recall.item_to_item import ItemToItemIndex
from cascade.recall.popular import DECAY_EPOCH, decayed_increment
from cascade.settings import Settings
from orchestrator.clients import keys

pytestmark = pytest.mark.integration
TS = int(time.time())  # one request time for the session (within the accepted window): recommendations are reproducible


@pytest.fixture
async def store(serving_settings: Settings, redis_server) -> AsyncIterator[redis.Redis]:
    client = redis.from_url(serving_settings.effective_redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


def event(user_id: int, item_id: int, kind: str = "impression", **extra) -> dict:
    return {"event_id": uuid.uuid4().hex, "request_id": "", "user_id": user_id, "item_id": item_id, "type": kind, **extra}


async def feedback(http: httpx.AsyncClient, events: list[dict]) -> dict:
    response = await http.post("/v1/feedback", json={"events": events})
    assert response.status_code == 200, response.text
    return response.json()


async def shown(http: httpx.AsyncClient, user_id: int, k: int) -> list[dict]:
    response = await http.post("/v1/recommend", json={"user_id": user_id, "k": k, "context": {"timestamp": TS}})
    assert response.status_code == 200, response.text
    assert response.json()["degraded"] == []
    return response.json()["items"]


async def forget_exposure(store: redis.Redis, user_id: int) -> None:
    """Drop both exposure buffers of a user. test_degradation's load, earlier in the session, cycles
    through every user id of the export, so any user may have been shown items already (CI saw user
    202's first answer shaped by that load, and its repeat without the short buffer differ by 6 of 10)."""
    await store.delete(keys.short_exposure(user_id), keys.long_exposure(user_id))


async def user_keys(store: redis.Redis, user_id: int) -> tuple:
    long = await store.zrange(keys.long_exposure(user_id), 0, -1, withscores=True)
    return long, await store.lrange(keys.sequence(user_id), 0, -1)


async def test_counts_accepted_and_duplicates_and_a_replay_changes_nothing(client, store, exported: Settings) -> None:
    user = 201
    clicked_at = int(time.time())
    batch = [event(user, 5, "impression"), event(user, 6, "click", timestamp=clicked_at), event(user, 7, "dwell", dwell_ms=1200)]
    batch.append(dict(batch[1]))  # the same event twice in one batch
    clicks_before = await store.zscore(keys.POPULAR, "6") or 0.0
    assert await feedback(client, batch) == {"accepted": 3, "duplicates": 1}
    long, sequence = await user_keys(store, user)
    assert {m for m, _ in long} == {"5", "6", "7"} and sequence == ["6"]  # every event exposes, clicks extend
    # one click adds the popular channel's time-decayed increment, once
    epoch = await store.get(keys.POPULAR_EPOCH)  # absent until the writer first rolls it
    one_click = decayed_increment(clicked_at, exported.popular_decay_tau_s, float(epoch) if epoch else DECAY_EPOCH)
    assert await store.zscore(keys.POPULAR, "6") == pytest.approx(clicks_before + one_click)
    assert 0 < await store.ttl(keys.long_exposure(user)) <= 7 * 86_400

    assert await feedback(client, batch) == {"accepted": 0, "duplicates": 4}
    assert await user_keys(store, user) == (long, sequence)
    assert await store.zscore(keys.POPULAR, "6") == pytest.approx(clicks_before + one_click)


STILL_TRENDING = 3_600.0  # popular_refresh_s: the trending list other tests' clicks move is read once


async def test_an_impression_stays_filtered_after_the_short_buffer_is_gone(configure, serve, store, triton) -> None:
    user, k = 202, 10
    await forget_exposure(store, user)
    async with serve(configure(popular_refresh_s=STILL_TRENDING)) as (app, client):
        await app.state.funnel.resources.channels.refresh_trending()  # now, not after the first answer
        first = [i["item_id"] for i in await shown(client, user, k)]
        await store.delete(keys.short_exposure(user))
        again = [i["item_id"] for i in await shown(client, user, k)]
        assert len(set(again) & set(first)) >= k // 2  # nothing exposed: the first items would come back
        await store.delete(keys.short_exposure(user))

        seen = again[:5]
        assert (await feedback(client, [event(user, i, timestamp=int(time.time())) for i in seen]))["accepted"] == 5
        after = [i["item_id"] for i in await shown(client, user, k)]
        assert set(after).isdisjoint(seen) and len(after) == k


async def test_long_term_exposure_expires_after_its_ttl(configure, serve, store, triton) -> None:
    user, k = 203, 8
    await forget_exposure(store, user)  # the second answer must differ from the first by the feedback alone
    async with serve(configure(long_exposure_ttl_s=1, popular_refresh_s=STILL_TRENDING)) as (app, http):
        await app.state.funnel.resources.channels.refresh_trending()  # now, not after the first answer
        first = [i["item_id"] for i in await shown(http, user, k)]
        await store.delete(keys.short_exposure(user))
        await feedback(http, [event(user, first[0])])
        assert await store.ttl(keys.long_exposure(user)) in (0, 1)
        deadline = time.monotonic() + 10
        while await store.exists(keys.long_exposure(user)):
            assert time.monotonic() < deadline, "the long-term exposure key outlived its 1 s TTL by 10 s"
            await asyncio.sleep(0.1)
        assert first[0] in [i["item_id"] for i in await shown(http, user, k)]


async def test_clicks_on_one_category_bring_more_of_it(client, store, exported: Settings) -> None:
    user, k = 204, 30
    category = FeatureTables.load(ArtifactPaths(exported.artifacts_dir).tables).item_category
    before = await shown(client, user, k)
    await store.delete(keys.short_exposure(user))
    counts = np.bincount([i["category"] for i in before], minlength=exported.n_categories)
    target = int(np.argmin(counts))  # the category this user is shown least of
    clicked = np.flatnonzero(category == target)[: exported.history_len]
    now = int(time.time())
    await feedback(client, [event(user, int(i), "click", timestamp=now - len(clicked) + n) for n, i in enumerate(clicked)])
    sequence = await store.lrange(keys.sequence(user), 0, -1)
    assert sequence[::-1] == [str(i) for i in clicked[-exported.history_len:]]
    after = await shown(client, user, k)
    n_after = sum(i["category"] == target for i in after)
    print(f"category {target}: {counts[target]} of {k} before the clicks, {n_after} after")
    assert n_after >= counts[target] + 5


async def test_a_cold_start_user_with_clicks_is_recalled_from_them(client, exported: Settings) -> None:
    user = exported.n_users + 777
    await feedback(client, [event(user, i, "click") for i in (11, 12, 13)])
    response = await client.post("/v1/recommend", json={"user_id": user, "k": 10})
    body = response.json()
    assert response.status_code == 200 and body["cold_start"] is False
    assert "ann" in {i["channel"] for i in body["items"]}
    assert {11, 12, 13}.isdisjoint(i["item_id"] for i in body["items"])  # clicks are exposures too


async def test_a_clicked_items_neighbours_appear(client, exported: Settings) -> None:
    """A new user clicks one item: its co-click neighbours (the item-to-item index) come into the answer."""
    index = ItemToItemIndex.load(ArtifactPaths(exported.artifacts_dir).item_to_item)
    clicked = int(np.argmax((index.neighbours >= 0).sum(axis=1)))  # an item with a full neighbour list
    neighbours = set(index.neighbours[clicked][index.neighbours[clicked] >= 0].tolist())
    user, k = exported.n_users + 4242, 50
    before = [i["item_id"] for i in await shown(client, user, k)]
    await feedback(client, [event(user, clicked, "click", timestamp=TS)])
    after = await shown(client, user, k)
    found = [i for i in after if i["item_id"] in neighbours]
    print(f"item {clicked}: {len(neighbours & set(before))} of its {len(neighbours)} neighbours in the answer before "
          f"the click, {len(found)} after ({sorted({i['channel'] for i in found})})")
    assert len(found) >= 5 and len(found) >= 3 * len(neighbours & set(before))


async def test_a_full_batch_of_500_is_accepted(client) -> None:
    body = await feedback(client, [event(205 + n % 3, n) for n in range(500)])
    assert body == {"accepted": 500, "duplicates": 0}


@pytest.mark.parametrize(
    ("events", "field"),
    [
        ([], "events"),
        ([event(1, 1)] * 501, "events"),
        ([{**event(1, 1), "event_id": ""}], "events.0.event_id"),
        ([{**event(1, 1), "event_id": "x" * 129}], "events.0.event_id"),
        ([event(1, 1), {**event(1, 1), "user_id": -1}], "events.1.user_id"),
        ([{**event(1, 1), "item_id": "7"}], "events.0.item_id"),
        ([event(1, 1, "like")], "events.0.type"),
        ([event(1, 1, "dwell")], "events.0.dwell_ms"),
        ([event(1, 1, "click", dwell_ms=5)], "events.0.dwell_ms"),
        ([event(1, 1, "dwell", dwell_ms=-1)], "events.0.dwell_ms"),
        ([event(1, 1, timestamp="noon")], "events.0.timestamp"),
        ([{**event(1, 1), "colour": "red"}], "events.0.colour"),
        ([{k: v for k, v in event(1, 1).items() if k != "request_id"}], "events.0.request_id"),
    ],
)
async def test_bad_feedback_is_422_naming_the_field(client, events: list[dict], field: str) -> None:
    response = await client.post("/v1/feedback", json={"events": events})
    assert response.status_code == 422, response.text
    assert field in response.json()["fields"] and field in response.json()["error"]


async def test_item_outside_the_catalogue_is_422_naming_it(client, store, exported: Settings) -> None:
    events = [event(250, 3), event(250, exported.n_items), event(250, exported.n_items + 9)]
    response = await client.post("/v1/feedback", json={"events": events})
    assert response.status_code == 422
    assert response.json()["fields"] == ["events.1.item_id", "events.2.item_id"]
    assert await store.exists(keys.long_exposure(250)) == 0  # nothing of a refused batch is applied


async def test_a_client_over_its_rate_gets_429_with_retry_after_and_nothing_is_written(configure, serve, store, triton) -> None:
    settings = configure(feedback_rate_per_s=1.0, feedback_burst=5, feedback_client_header="x-client-id")
    async with serve(settings) as (_, http):
        first = await http.post("/v1/feedback", json={"events": [event(260, i) for i in range(4)]}, headers={"x-client-id": "a"})
        assert first.status_code == 200
        over = await http.post("/v1/feedback", json={"events": [event(261, i) for i in range(3)]}, headers={"x-client-id": "a"})
        assert over.status_code == 429 and over.headers["retry-after"] == "2"  # 1 token left, 3 wanted, 1/s
        assert "client a is over its feedback rate" in over.json()["error"]
        assert await store.exists(keys.long_exposure(261)) == 0  # refused before anything was written
        other = await http.post("/v1/feedback", json={"events": [event(262, 1)]}, headers={"x-client-id": "b"})
        assert other.status_code == 200  # another client: its own bucket
