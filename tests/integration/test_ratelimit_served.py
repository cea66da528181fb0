"""Per-client token buckets against a real redis-server (`orchestrator.clients.ratelimit`)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as redis

from cascade.servers.process import free_port
from cascade.servers.redis import start_redis
from orchestrator.clients.ratelimit import KEY, RateLimiter

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(tmp_path: Path):
    port = free_port()
    server = await asyncio.to_thread(start_redis, port, tmp_path)
    connection = redis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        yield connection
    finally:
        await connection.aclose()
        await asyncio.to_thread(server.stop)


async def test_a_burst_is_allowed_then_refused_with_retry_after_then_refilled(client) -> None:
    limiter = RateLimiter(client, rate_per_s=20.0, burst=10)
    assert [(await limiter.spend("10.0.0.1", 3)).allowed for _ in range(4)] == [True, True, True, False]  # 9 of 10 spent
    refused = await limiter.spend("10.0.0.1", 5)
    assert not refused.allowed and refused.retry_after_s == 1  # 4 more tokens at 20/s: within a second
    assert (await limiter.spend("10.0.0.2", 10)).allowed  # another client: its own bucket
    await asyncio.sleep(0.3)  # +6 tokens
    assert (await limiter.spend("10.0.0.1", 5)).allowed
    assert 0 < await client.pttl(KEY.format(client="10.0.0.1")) <= 2_000  # an idle bucket goes once it is full


async def test_concurrent_calls_never_spend_the_same_tokens(client) -> None:
    limiter = RateLimiter(client, rate_per_s=0.001, burst=50)  # no refill to speak of
    verdicts = await asyncio.gather(*(limiter.spend("198.51.100.7", 1) for _ in range(80)))
    assert sum(v.allowed for v in verdicts) == 50


async def test_a_batch_over_the_burst_is_refused_without_touching_the_bucket(client) -> None:
    limiter = RateLimiter(client, rate_per_s=10.0, burst=20)
    verdict = await limiter.spend("10.0.0.9", 21)
    assert (verdict.allowed, verdict.retry_after_s) == (False, 2)
    assert await client.exists(KEY.format(client="10.0.0.9")) == 0
    with pytest.raises(ValueError, match="rate_per_s > 0 and burst >= 1"):
        RateLimiter(client, 0.0, 5)
