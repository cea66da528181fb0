"""Feedback events into Redis: deduplicate by event id, then apply what the new ones call for.

Two pipelined round trips per batch: `SET NX EX` of every event id (a replay finds its id taken
and counts as a duplicate), then the writes of the new events' effects (`cascade.feedback`):
the long-term exposure buffer per user, the live clicks sequence per user, the click
counts behind the popular channel, and the labels of each served sample (one hash per request id). If the writes fail, the ids just claimed are released, so
a retry of the batch is not mistaken for a replay.
"""
from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis

from cascade.feedback import Event, effects_of
from cascade.recall.popular import decayed_increment
from orchestrator.clients.exposure import LABELS_KEY, LONG_KEY, POPULAR_KEY, SEQUENCE_KEY
from orchestrator.clients.resp import redis_errors

DEDUP_KEY = "cascade:feedback:event:{event_id}"


@dataclass(frozen=True)
class FeedbackLimits:
    dedup_ttl_s: int
    long_ttl_s: int
    long_max_items: int
    sequence_ttl_s: int
    history_len: int
    popular_decay_tau_s: float
    label_ttl_s: int


class FeedbackStore:
    def __init__(self, client: redis.Redis, limits: FeedbackLimits) -> None:
        self.redis, self.limits = client, limits

    async def _claim(self, events: list[Event]) -> list[bool]:
        """True for each event whose id was not seen before (it is now)."""
        async with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
            for e in events:
                pipe.set(DEDUP_KEY.format(event_id=e.event_id), 1, nx=True, ex=self.limits.dedup_ttl_s)
            return [bool(r) for r in await pipe.execute()]

    async def _apply(self, events: list[Event]) -> None:
        lim = self.limits
        effects = effects_of(events, lambda ts: decayed_increment(ts, lim.popular_decay_tau_s))
        async with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
            for user_id, items in effects.exposures.items():
                key = LONG_KEY.format(user_id=user_id)
                pipe.zadd(key, {str(i): ts for i, ts in items.items()}, gt=True)  # an older event never rolls back
                pipe.zremrangebyrank(key, 0, -lim.long_max_items - 1)
                pipe.expire(key, lim.long_ttl_s)
            for user_id, items in effects.clicks.items():
                key = SEQUENCE_KEY.format(user_id=user_id)
                pipe.lpush(key, *(str(i) for i in items))  # oldest pushed first: the head is the latest click
                pipe.ltrim(key, 0, lim.history_len - 1)
                pipe.expire(key, lim.sequence_ttl_s)
            for item_id, n in effects.popularity.items():
                pipe.zincrby(POPULAR_KEY, n, str(item_id))
            for request_id, increments in effects.labels.items():
                key = LABELS_KEY.format(request_id=request_id)
                for field, n in increments.items():
                    pipe.hincrby(key, field, n)
                pipe.expire(key, lim.label_ttl_s)
            await pipe.execute()

    async def record(self, events: list[Event]) -> list[bool]:
        """Per event, whether it was new (and applied): an event id seen before, in this batch or within
        the dedup TTL, is a duplicate."""
        if not events:
            return []
        claimed = await self._claim(events)
        new = [e for e, fresh in zip(events, claimed) if fresh]
        if new:
            try:
                await self._apply(new)
            except BaseException:
                try:
                    await self.redis.delete(*{DEDUP_KEY.format(event_id=e.event_id) for e in new})
                except Exception:  # Redis is down: the ids expire with their TTL; the original error is what counts
                    pass
                raise
        return claimed
