"""Feedback events into Redis: each event applied exactly once, whatever fails and is retried.

A batch is checked first (`cascade.feedback.event_problems`: a refused batch is an `InvalidInput`,
422, with nothing written), then applied in steps, each one Lua script (`APPLY_LUA`, EVALSHA) that
Redis runs atomically and writes to its AOF as one transaction: the users' step (long-term exposure
buffers, live clicks sequences, answer labels), then trending's (the clicks' time-decayed weights).
On a Redis Cluster the users' step is one per hash slot of the batch's users (a user's keys share a
hash tag, `orchestrator.clients.keys`), run side by side, each on its node. Each step
1. reads its events' claims: any claimed by another call makes it return those and write nothing
   (the store drops them as duplicates and runs the rest again); claims held by this very call (its
   token) mean an earlier attempt of the step was applied and its reply lost;
2. checks what the writes would meet (key types, label counters' int64 headroom) and refuses,
   still writing nothing, where a write would fail: Redis does not roll a script back;
3. claims its events (`SET claim token EX ttl`) and writes their effects (`cascade.feedback`;
   trending rolls its epoch first when due, `cascade.recall.popular`).
The users' and trending's steps claim under different keys, so each effect is applied once whichever
steps a failed call completed: a call that fails (503) left each step either untouched or applied
with its claims, and the client's retry applies the rest, each event once.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from cascade.feedback import Event, effects_of, event_problems, first_kept, first_occurrences
from cascade.recall.popular import DECAY_EPOCH, MAX_EXPONENT, batch_reference, relative_increment
from orchestrator.clients import keys
from orchestrator.clients.redis_client import Client
from orchestrator.clients.resp import redis_errors
from orchestrator.errors import InvalidInput

RANGE_ERROR = "CASCADE_RANGE"

APPLY_LUA = """
-- KEYS[1]: a key of the step's slot (routes it on a cluster); ARGV[1]: the step (a ScriptCall's argument)
local p = cjson.decode(ARGV[1])

local taken, ours = {}, false
for i, key in ipairs(p.ids) do
  local holder = redis.call('GET', key)
  if holder == p.token then ours = true elseif holder then taken[#taken + 1] = i - 1 end
end
if #taken > 0 then return taken end
if ours then return {} end

local function wrong_type(key, kind)
  local found = redis.call('TYPE', key)['ok']
  return found ~= 'none' and found ~= kind
end
local checks = {{p.exposures, 'zset'}, {p.clicks, 'list'}, {p.labels, 'hash'}}
for _, check in ipairs(checks) do
  for _, entry in ipairs(check[1]) do
    if wrong_type(entry[1], check[2]) then return redis.error_reply('WRONGTYPE ' .. entry[1]) end
  end
end
local INT64_SAFE = 2^63 - 2^12  -- int64's maximum, less the rounding of doubles near it
for _, h in ipairs(p.labels) do
  local fields = h[3]
  for j = 1, #fields, 2 do
    local held = tonumber(redis.call('HGET', h[1], fields[j]) or '0')
    if held + tonumber(fields[j + 1]) > INT64_SAFE then
      return redis.error_reply(p.range_error .. ' ' .. h[1] .. ' ' .. fields[j] .. ' would pass int64')
    end
  end
end
local t = p.trending
if t and wrong_type(t.key, 'zset') then return redis.error_reply('WRONGTYPE ' .. t.key) end

for _, key in ipairs(p.ids) do redis.call('SET', key, p.token, 'EX', p.id_ttl) end
for _, e in ipairs(p.exposures) do
  redis.call('ZADD', e[1], 'GT', unpack(e[4]))
  redis.call('ZREMRANGEBYRANK', e[1], 0, -e[3] - 1)
  redis.call('EXPIRE', e[1], e[2])
end
for _, c in ipairs(p.clicks) do
  redis.call('LPUSH', c[1], unpack(c[4]))
  redis.call('LTRIM', c[1], 0, c[3] - 1)
  redis.call('EXPIRE', c[1], c[2])
end
for _, h in ipairs(p.labels) do
  local fields = h[3]
  for j = 1, #fields, 2 do redis.call('HINCRBY', h[1], fields[j], fields[j + 1]) end
  redis.call('EXPIRE', h[1], h[2])
end
if t then
  local epoch = tonumber(redis.call('GET', t.epoch_key) or t.default_epoch)
  local reference, tau = tonumber(t.reference), tonumber(t.tau)
  if (reference - epoch) / tau > tonumber(t.max_exponent) then
    redis.call('ZUNIONSTORE', t.key, 1, t.key, 'WEIGHTS', math.exp((epoch - reference) / tau))
    redis.call('ZREMRANGEBYSCORE', t.key, '-inf', 0)
    redis.call('SET', t.epoch_key, t.reference)
    epoch = reference
  end
  local scale = math.exp((reference - epoch) / tau)
  for j = 1, #t.items, 2 do
    local increment = tonumber(t.items[j + 1]) * scale
    if increment > 0 then redis.call('ZINCRBY', t.key, increment, t.items[j]) end
  end
end
return {}
"""


@dataclass(frozen=True)
class FeedbackLimits:
    dedup_ttl_s: int
    long_ttl_s: int
    long_max_items: int
    sequence_ttl_s: int
    history_len: int
    popular_decay_tau_s: float
    label_ttl_s: int


@dataclass(frozen=True)
class ScriptCall:
    key: str  # a key in the step's slot (its first claim): routes the script on a cluster
    argument: str  # APPLY_LUA's ARGV[1]


def users_payload(events: list[Event], lim: FeedbackLimits, token: str) -> ScriptCall:
    """The script's argument for new events (first of their ids) of users whose keys share a slot
    (on one Redis, any users): the claims and each user's effects, numbers as text where they must
    stay exact (Lua numbers are doubles)."""
    by_user: dict[int, list[Event]] = {}
    for e in events:
        by_user.setdefault(e.user_id, []).append(e)
    writes: dict[str, list] = {"exposures": [], "clicks": [], "labels": []}
    for user, own in by_user.items():
        effects = effects_of(own)
        writes["exposures"].append([
            keys.long_exposure(user), lim.long_ttl_s, lim.long_max_items,
            [x for item, ts in effects.exposures[user].items() for x in (str(ts), str(item))],
        ])
        if user in effects.clicks:  # oldest pushed first: the head is the latest click
            writes["clicks"].append([keys.sequence(user), lim.sequence_ttl_s, lim.history_len, [str(i) for i in effects.clicks[user]]])
        writes["labels"] += [
            [keys.labels(user, request_id), lim.label_ttl_s, [x for field, n in increments.items() for x in (field, str(n))]]
            for request_id, increments in effects.labels.items()
        ]
    return _payload([keys.event_claim(e.user_id, e.event_id) for e in events], lim, token, writes)


def trending_payload(clicks: list[Event], lim: FeedbackLimits, token: str, now: float) -> ScriptCall:
    """The script's argument for new clicks' trending weights: relative to the batch's latest click,
    rolling the epoch first when due (`cascade.recall.popular`)."""
    tau = lim.popular_decay_tau_s
    reference = batch_reference((e.timestamp for e in clicks), now)
    effects = effects_of(clicks, lambda ts: relative_increment(ts, reference, now, tau))
    return _payload([keys.trending_claim(e.user_id, e.event_id) for e in clicks], lim, token, {
        "exposures": [], "clicks": [], "labels": [],
        "trending": {
            "key": keys.POPULAR, "epoch_key": keys.POPULAR_EPOCH, "default_epoch": repr(float(DECAY_EPOCH)),
            "reference": repr(reference), "tau": repr(float(tau)), "max_exponent": repr(MAX_EXPONENT),
            "items": [x for item, weight in effects.popularity.items() for x in (str(item), repr(weight))],
        },
    })


def _payload(claims: list[str], lim: FeedbackLimits, token: str, writes: dict) -> ScriptCall:
    return ScriptCall(claims[0], json.dumps(
        {"ids": claims, "token": token, "id_ttl": lim.dedup_ttl_s, "range_error": RANGE_ERROR, **writes},
        separators=(",", ":"),
    ))


Payload = Callable[[list[Event], str], ScriptCall]  # (a step's new events, the call's token) -> its script call


class FeedbackStore:
    def __init__(self, client: Client, limits: FeedbackLimits, clock: Callable[[], float] = time.time) -> None:
        self.redis, self.limits, self.clock = client, limits, clock
        self._apply = client.register_script(APPLY_LUA)
        self._cluster = isinstance(client, RedisCluster)

    async def _step(self, events: list[Event], payload: Payload, token: str) -> list[Event]:
        """Apply one step's events and claim them, dropping those another call claimed; return the
        events this call applied. Raises InvalidInput (nothing of the step written) where a write
        would fail."""
        pending = events
        while pending:  # each pass drops at least one event claimed by another call
            call = payload(pending, token)
            try:
                async with redis_errors():
                    taken = set(await self._apply(keys=[call.key], args=[call.argument]))
            except redis.ResponseError as err:
                if str(err).startswith(RANGE_ERROR):
                    raise InvalidInput([("events", str(err)[len(RANGE_ERROR) + 1:])]) from err
                raise
            if not taken:
                break
            pending = [e for n, e in enumerate(pending) if n not in taken]
        return pending

    def _slot(self, user_id: int) -> int:
        """The hash slot of the user's keys on a cluster; one Redis takes every user in one step."""
        return key_slot(keys.user_tag(user_id).encode()) if self._cluster else 0

    async def record(self, events: list[Event]) -> list[bool]:
        """Per event, whether it was new (and is now applied): an event id the user sent before, in
        this batch or within the dedup TTL, is a duplicate. Returns once Redis has applied every step.
        Raises InvalidInput for a batch whose writes would fail, and BackendUnavailable /
        BackendTimeout when Redis cannot answer: then each step was applied whole or not at all, so a
        retry counts each event once. The users' steps go first, side by side, and trending's only
        once they all succeeded: on one Redis a refused batch writes nothing; on a cluster a slot
        whose label would overflow writes nothing of its users while other slots' may be applied."""
        if not events:
            return []
        problems = event_problems(events)
        if problems:
            raise InvalidInput(problems)
        token = uuid.uuid4().hex  # marks this call's claims: a resent attempt finds its own
        kept = first_kept(events)
        by_slot: dict[int, list[Event]] = {}
        for e in kept:
            by_slot.setdefault(self._slot(e.user_id), []).append(e)
        outcomes = await asyncio.gather(
            *(self._step(group, self._users_payload, token) for group in by_slot.values()), return_exceptions=True
        )
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            raise failed[0]
        clicks = [e for e in kept if e.type == "click"]
        if clicks:
            await self._step(clicks, self._trending_payload, token)
        applied = {(e.user_id, e.event_id) for step in outcomes for e in step}
        return [first and (e.user_id, e.event_id) in applied for e, first in zip(events, first_occurrences(events))]

    def _users_payload(self, events: list[Event], token: str) -> ScriptCall:
        return users_payload(events, self.limits, token)

    def _trending_payload(self, clicks: list[Event], token: str) -> ScriptCall:
        return trending_payload(clicks, self.limits, token, self.clock())
