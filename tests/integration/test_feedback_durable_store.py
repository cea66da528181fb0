"""FeedbackStore against a real redis-server: a batch all or nothing, each event once, and trending
that stays finite with the writer's clock years ahead."""
from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as redis

from cascade.feedback import Event
from cascade.recall.popular import DECAY_EPOCH, trending_with_fallback
from cascade.servers.process import free_port
from cascade.servers.redis import start_redis
from orchestrator.clients import keys
from orchestrator.clients.feedback import APPLY_LUA, FeedbackLimits, FeedbackStore, trending_payload, users_payload
from orchestrator.errors import BackendUnavailable, InvalidInput

pytestmark = pytest.mark.integration
DAY = 86_400.0
YEAR = 365 * DAY
NOW = float(int(time.time()))  # whole seconds, as event timestamps are
LIMITS = FeedbackLimits(3_600, 3_600, 100, 3_600, 100, DAY, 3_600)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[redis.Redis]:
    process = await asyncio.to_thread(start_redis, free_port(), tmp_path)
    port = int(process.argv[process.argv.index("--port") + 1])
    connection = redis.from_url(f"redis://127.0.0.1:{port}", decode_responses=True)
    try:
        yield connection
    finally:
        await connection.aclose()
        await asyncio.to_thread(process.stop)


def click(n: int, user: int = 1, item: int = 7, ts: float = NOW, request_id: str = "r") -> Event:
    return Event(f"c{n}", user, item, "click", int(ts), request_id)


async def state(client: redis.Redis, users: range = range(1, 4), requests: tuple[str, ...] = ("r",)) -> tuple:
    """Everything feedback writes, for before/after comparisons."""
    return (
        [await client.zrange(keys.long_exposure(u), 0, -1, withscores=True) for u in users],
        [await client.lrange(keys.sequence(u), 0, -1) for u in users],
        [await client.hgetall(keys.labels(u, r)) for u in users for r in requests],
        await client.zrange(keys.POPULAR, 0, -1, withscores=True),
    )


async def test_a_batch_is_applied_once_and_its_replay_is_all_duplicates(client: redis.Redis) -> None:
    store = FeedbackStore(client, LIMITS)
    batch = [click(1), Event("i1", 2, 8, "impression", int(NOW), "r"), Event("d1", 2, 8, "dwell", int(NOW), "r", 1_500),
             click(1)]
    assert await store.record(batch) == [True, True, True, False]
    applied = await state(client)
    assert applied[1] == [["7"], [], []] and applied[2] == [{"clicks:7": "1"}, {"impressions:8": "1", "dwell_ms:8": "1500"}, {}]
    assert await store.record(batch + [click(2, user=3, request_id="s")]) == [False, False, False, False, True]
    assert (await state(client))[2] == applied[2] and (await state(client))[1] == [["7"], [], ["7"]]


async def test_a_batch_that_would_overflow_a_counter_writes_nothing_and_claims_no_id(client: redis.Redis) -> None:
    """The issue's trigger: HINCRBY past int64 failed halfway through a pipeline, after the first writes."""
    store = FeedbackStore(client, LIMITS)
    await client.hset(keys.labels(2, "r"), "dwell_ms:9", 2**63 - 1_000)
    before = await state(client)
    batch = [click(1), Event("d1", 2, 9, "dwell", int(NOW), "r", 5_000)]
    for _ in range(2):  # a retry is refused the same way, and still writes nothing: trending neither
        with pytest.raises(InvalidInput, match="dwell_ms:9 would pass int64"):
            await store.record(batch)
        assert await state(client) == before
        assert not await client.exists(*(keys.event_claim(e.user_id, e.event_id) for e in batch))
        assert not await client.exists(keys.trending_claim(1, "c1"))
    assert await store.record(batch[:1]) == [True]  # the rest of the batch goes through once sent alone


async def test_the_issues_dwell_of_2_62_is_refused_before_redis(client: redis.Redis) -> None:
    store = FeedbackStore(client, LIMITS)
    with pytest.raises(InvalidInput) as refused:
        await store.record([click(1), Event("d1", 1, 7, "dwell", int(NOW), "r", 2**62)])
    assert refused.value.problems[0][0] == "events.1.dwell_ms"
    assert await client.dbsize() == 0


async def test_a_resent_attempt_of_the_same_call_finds_its_own_claims(client: redis.Redis) -> None:
    """redis-py resends a command once on a dropped connection: if the first attempt ran, the second
    must report it applied, and apply nothing again."""
    for step in (users_payload([click(1)], LIMITS, "token-a"), trending_payload([click(1)], LIMITS, "token-a", NOW)):
        assert await client.eval(APPLY_LUA, 1, step.key, step.argument) == []
        assert await client.eval(APPLY_LUA, 1, step.key, step.argument) == []  # its own claim: applied, not taken
    other = users_payload([click(1)], LIMITS, "token-b")
    assert await client.eval(APPLY_LUA, 1, other.key, other.argument) == [0]  # another call's
    assert await client.lrange(keys.sequence(1), 0, -1) == ["7"]
    assert await client.zcard(keys.POPULAR) == 1


async def test_concurrent_overlapping_batches_apply_each_event_once(client: redis.Redis) -> None:
    store = FeedbackStore(client, LIMITS)
    batches = [[click(n, user=1 + n % 3, item=n) for n in range(start, start + 20)] for start in range(0, 100, 10)]
    results = await asyncio.gather(*(store.record(b) for b in batches))
    assert sum(sum(r) for r in results) == 110  # ids 0..109, each accepted by exactly one call
    sequences = [await client.lrange(keys.sequence(u), 0, -1) for u in (1, 2, 3)]
    assert sorted(int(i) for s in sequences for i in s) == list(range(110))


async def trending(client: redis.Redis, now: float) -> tuple[list[int], list[float], float]:
    rows = await client.zrevrange(keys.POPULAR, 0, -1, withscores=True)
    epoch = float(await client.get(keys.POPULAR_EPOCH) or DECAY_EPOCH)
    ids, scores = trending_with_fallback(
        np.array([int(m) for m, _ in rows]), np.array([s for _, s in rows]), now, DAY,
        np.array([], np.int64), np.array([], np.float32), k=10, epoch=epoch,
    )
    assert all(math.isfinite(s) for _, s in rows)
    return ids.tolist(), scores.tolist(), epoch


async def test_years_ahead_the_epoch_rolls_scores_stay_finite_and_decay_holds(client: redis.Redis) -> None:
    clock = [NOW]
    store = FeedbackStore(client, LIMITS, clock=lambda: clock[0])
    await store.record([click(n, item=1) for n in range(3)])
    clock[0] = NOW + YEAR
    await store.record([click(10, item=2, ts=clock[0])])
    ids, scores, epoch = await trending(client, clock[0])
    assert epoch == clock[0] and ids == [2, 1]  # rolled: (now + 1 y - 2026-01-01) is > 600 days
    assert scores == pytest.approx([0.0, math.log(3) - 365], abs=1e-4)  # the decayed values, renormalised

    clock[0] = NOW + 10 * YEAR
    await store.record([click(20, item=3, ts=clock[0]), click(21, item=3, ts=clock[0] - DAY)])
    ids, scores, epoch = await trending(client, clock[0])
    assert epoch == clock[0] and ids == [3]  # the others decayed to 0 and left the set
    assert scores == pytest.approx([math.log(1 + math.exp(-1))], abs=1e-5)


async def test_a_click_dated_a_year_ahead_counts_as_one_click_now(client: redis.Redis) -> None:
    store = FeedbackStore(client, LIMITS, clock=lambda: NOW)
    await store.record([click(1, item=1), click(2, item=1), click(3, item=2, ts=NOW + 370 * DAY)])
    ids, scores, _ = await trending(client, NOW)
    assert ids == [1, 2] and scores == pytest.approx([math.log(2), 0.0], abs=1e-4)


async def test_at_maxmemory_feedback_is_refused_whole_and_nothing_is_evicted(client: redis.Redis) -> None:
    """`noeviction` (`start_redis`): a full Redis drops no dedup id to make room; the refused batch
    is a 503 with nothing applied, and goes through once, when memory is freed."""
    store = FeedbackStore(client, LIMITS)
    assert (await client.config_get("maxmemory-policy"))["maxmemory-policy"] == "noeviction"
    assert await store.record([click(1)]) == [True]
    used = int((await client.info("memory"))["used_memory"])
    await client.config_set("maxmemory", used + 200_000)
    with pytest.raises(redis.OutOfMemoryError):
        for n in range(1_000):  # the working set grows to the limit
            await client.set(f"filler:{n}", "x" * 10_000, ex=3_600)
    used = int((await client.info("memory"))["used_memory"])
    await client.config_set("maxmemory", used - 50_000)  # and stays past it, whatever buffers come and go
    before = await state(client)
    batch = [click(1), click(2, user=2, item=8), Event("i1", 3, 9, "impression", int(NOW), "s")]
    with pytest.raises(BackendUnavailable, match="OOM"):
        await store.record(batch)
    assert await state(client) == before
    assert await client.exists(keys.event_claim(1, "c1")) == 1  # the earlier claim is still there
    await client.delete(*[f"filler:{n}" for n in range(1_000)])  # TTLs free memory
    assert await store.record(batch) == [False, True, True]
    assert (await state(client))[1] == [["7"], ["8"], []]
