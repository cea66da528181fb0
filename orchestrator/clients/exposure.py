"""Server-side exposure in Redis: two sorted sets per user (member = item id, score = unix seconds).

The short-term buffer holds what the funnel served (written here, after each answer); the
long-term one holds real impressions and clicks (written by `orchestrator.clients.feedback`).
Entries older than a buffer's TTL are expired by score at read time, each key itself expires
after its TTL, and each set is capped to its newest items. The funnel's read (`user_state`: both
buffers and the user's live clicks sequence) is one pipelined round trip, and so is each write: the
funnel's write after an answer (`record_served`) also appends the answer's served sample
(`cascade.samples`) to the samples stream, trimmed to about CASCADE_SAMPLE_LOG_MAX_LEN entries.
Those two round trips go through `orchestrator.clients.resp` (a third of redis-py's CPU); the rest
(feedback, readiness, the operator board) through redis-py's client, `redis`. On a Redis Cluster
both go through redis-py's cluster pipeline: the read to the user's node (its keys share a hash tag,
`orchestrator.clients.keys`), the write to the user's node and the stream's, side by side.
"""
from __future__ import annotations

import time

import numpy as np
import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cascade.exposure import expired_before, exposed_union
from cascade.samples import ServedSample, encode_sample, stream_cap
from orchestrator.clients import keys
from orchestrator.clients.redis_client import connect
from orchestrator.clients.resp import RedisPyBatches, batches_for
from orchestrator.ports import UserState


class ExposureStore:
    def __init__(
        self, url: str, ttl_s: int, max_items: int, long_ttl_s: int = 7 * 86_400, history_len: int = 50,
        samples_max_len: int = 100_000, samples_max_bytes: int = 256 << 20, cluster: bool = False,
    ) -> None:
        # One immediate retry (a pooled connection may be stale after a Redis restart), no backoff:
        # redis-py's default sleeps for seconds between retries, far past any stage budget.
        self.redis = connect(url, cluster, socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 1))
        self.batches = RedisPyBatches(self.redis) if cluster else batches_for(url, self.redis, timeout_s=1.0)
        self.ttl_s, self.max_items = ttl_s, max_items
        self.long_ttl_s, self.history_len = long_ttl_s, history_len
        self.samples_max_len, self.samples_max_bytes = samples_max_len, samples_max_bytes

    async def user_state(self, user_id: int) -> UserState:
        """Both exposure buffers (expired entries dropped) and the live clicks, in one round trip."""
        short, long = keys.short_exposure(user_id), keys.long_exposure(user_id)
        now = time.time()
        _, shown, _, real, sequence = await self.batches.execute([
            ("ZREMRANGEBYSCORE", short, "-inf", f"({expired_before(now, self.ttl_s)}"),
            ("ZRANGE", short, 0, -1),
            ("ZREMRANGEBYSCORE", long, "-inf", f"({expired_before(now, self.long_ttl_s)}"),
            ("ZRANGE", long, 0, -1),
            ("LRANGE", keys.sequence(user_id), 0, self.history_len - 1),
        ])
        as_ids = lambda members: np.array([int(m) for m in members], dtype=np.int64)  # noqa: E731
        return UserState(exposed_union(as_ids(shown), as_ids(real)), as_ids(sequence)[::-1].copy(), as_ids(real))

    async def record_served(self, user_id: int, item_ids: np.ndarray, sample: ServedSample | None = None) -> None:
        """The answer's items into the short-term buffer and, if given, its sample onto the stream."""
        if len(item_ids) == 0 and sample is None:
            return
        key = keys.short_exposure(user_id)
        now = repr(time.time())
        commands: list[tuple] = []
        if len(item_ids):
            commands += [
                ("ZADD", key, *(x for i in item_ids.tolist() for x in (now, i))),
                ("ZREMRANGEBYRANK", key, 0, -self.max_items - 1),
                ("EXPIRE", key, self.ttl_s),
            ]
        if sample is not None:
            fields = encode_sample(sample)
            entry_bytes = sum(len(k) + len(v) for k, v in fields.items())
            cap = stream_cap(entry_bytes, self.samples_max_len, self.samples_max_bytes)
            commands.append(("XADD", keys.SAMPLES, "MAXLEN", "~", cap, "*", *(x for kv in fields.items() for x in kv)))
        await self.batches.execute(commands)

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (redis.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.batches.close()
        await self.redis.aclose()
