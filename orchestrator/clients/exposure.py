"""Server-side exposure in Redis: one sorted set per user (member = item id, score = unix seconds).

Entries older than the TTL are expired by score at read time, the key itself expires after the
TTL, and the set is capped to its newest `max_items`. Each read and write is one pipelined
round trip.
"""
from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cascade.exposure import expired_before
from orchestrator.clients.errors import BackendTimeout, BackendUnavailable

KEY = "cascade:exposure:short:{user_id}"


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except (redis.TimeoutError, TimeoutError) as err:
        raise BackendTimeout(f"redis: {err}") from err
    except (redis.ConnectionError, OSError) as err:
        raise BackendUnavailable(f"redis: {err}") from err


class ExposureStore:
    def __init__(self, url: str, ttl_s: int, max_items: int) -> None:
        # One immediate retry (a pooled connection may be stale after a Redis restart), no backoff:
        # redis-py's default sleeps for seconds between retries, far past any stage budget.
        self.redis = redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 1)
        )
        self.ttl_s, self.max_items = ttl_s, max_items

    async def exposed(self, user_id: int) -> np.ndarray:
        key = KEY.format(user_id=user_id)
        cutoff = expired_before(time.time(), self.ttl_s)
        async with _translated(), self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, "-inf", f"({cutoff}")
            pipe.zrange(key, 0, -1)
            _, members = await pipe.execute()
        return np.array([int(m) for m in members], dtype=np.int64)

    async def record(self, user_id: int, item_ids: np.ndarray) -> None:
        if len(item_ids) == 0:
            return
        key = KEY.format(user_id=user_id)
        now = time.time()
        async with _translated(), self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {str(int(i)): now for i in item_ids})
            pipe.zremrangebyrank(key, 0, -self.max_items - 1)
            pipe.expire(key, self.ttl_s)
            await pipe.execute()

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (redis.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.redis.aclose()
