"""Feedback events into Redis: each event applied exactly once, a batch all or nothing.

A batch is checked first (`cascade.feedback.event_problems`: a refused batch is an `InvalidInput`,
422, with nothing written), then applied by one Lua script (`APPLY_LUA`, EVALSHA), which Redis runs
atomically and writes to its AOF as one transaction. The script
1. reads the batch's event ids: any id claimed by another call makes it return those ids and write
   nothing (the store drops them as duplicates and runs the rest again); ids claimed by this very
   call (its token) mean an earlier attempt of the call was applied and its reply lost;
2. checks what the writes would meet (key types, label counters' int64 headroom) and refuses the
   batch, still writing nothing, where a write would fail: Redis does not roll a script back;
3. claims the ids (`SET id token EX ttl`) and writes the effects (`cascade.feedback`): the long-term
   exposure buffer per user, the live clicks sequence per user, the labels of each served sample
   (one hash per request id), and the clicks' trending weight (`cascade.recall.popular`: rolling
   the epoch first when due).
So a call that fails (503) left either nothing or the whole batch with its ids claimed, and the
client's retry applies each event once. The keys are named in the script's argument (one Redis,
not a cluster).
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis

from cascade.feedback import Event, effects_of, event_problems, first_kept, first_occurrences
from cascade.recall.popular import (
    DECAY_EPOCH, MAX_EXPONENT, POPULAR_EPOCH_KEY, batch_reference, relative_increment,
)
from orchestrator.clients.exposure import LABELS_KEY, LONG_KEY, POPULAR_KEY, SEQUENCE_KEY
from orchestrator.clients.resp import redis_errors
from orchestrator.errors import InvalidInput

DEDUP_KEY = "cascade:feedback:event:{event_id}"
RANGE_ERROR = "CASCADE_RANGE"

APPLY_LUA = """
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


def apply_payload(events: list[Event], lim: FeedbackLimits, token: str, now: float) -> str:
    """The script's argument for new events (first of their ids): the ids to claim and the effects,
    numbers as text where they must stay exact (Lua numbers are doubles)."""
    tau = lim.popular_decay_tau_s
    reference = batch_reference((e.timestamp for e in events if e.type == "click"), now)
    effects = effects_of(events, lambda ts: relative_increment(ts, reference, now, tau))
    payload: dict = {
        "ids": [DEDUP_KEY.format(event_id=e.event_id) for e in events],
        "token": token, "id_ttl": lim.dedup_ttl_s, "range_error": RANGE_ERROR,
        "exposures": [
            [LONG_KEY.format(user_id=user), lim.long_ttl_s, lim.long_max_items,
             [x for item, ts in items.items() for x in (str(ts), str(item))]]
            for user, items in effects.exposures.items()
        ],
        "clicks": [  # oldest pushed first: the head is the latest click
            [SEQUENCE_KEY.format(user_id=user), lim.sequence_ttl_s, lim.history_len, [str(i) for i in items]]
            for user, items in effects.clicks.items()
        ],
        "labels": [
            [LABELS_KEY.format(request_id=request_id), lim.label_ttl_s,
             [x for field, n in increments.items() for x in (field, str(n))]]
            for request_id, increments in effects.labels.items()
        ],
    }
    if effects.popularity:
        payload["trending"] = {
            "key": POPULAR_KEY, "epoch_key": POPULAR_EPOCH_KEY, "default_epoch": repr(float(DECAY_EPOCH)),
            "reference": repr(reference), "tau": repr(float(tau)), "max_exponent": repr(MAX_EXPONENT),
            "items": [x for item, weight in effects.popularity.items() for x in (str(item), repr(weight))],
        }
    return json.dumps(payload, separators=(",", ":"))


class FeedbackStore:
    def __init__(self, client: redis.Redis, limits: FeedbackLimits, clock: Callable[[], float] = time.time) -> None:
        self.redis, self.limits, self.clock = client, limits, clock
        self._apply = client.register_script(APPLY_LUA)

    async def _apply_unless_taken(self, events: list[Event], token: str) -> set[int]:
        """Apply `events` and claim their ids, unless some id is claimed by another call: then
        nothing is written and the positions of those events come back."""
        payload = apply_payload(events, self.limits, token, self.clock())
        try:
            async with redis_errors():
                return set(await self._apply(args=[payload]))
        except redis.ResponseError as err:
            if str(err).startswith(RANGE_ERROR):
                raise InvalidInput([("events", str(err)[len(RANGE_ERROR) + 1:])]) from err
            raise

    async def record(self, events: list[Event]) -> list[bool]:
        """Per event, whether it was new (and is now applied): an event id seen before, in this batch
        or within the dedup TTL, is a duplicate. Returns once Redis has applied the batch; raises
        InvalidInput (nothing written) for a batch whose writes would fail, and BackendUnavailable /
        BackendTimeout when Redis cannot answer: then either all of the new events were applied and
        their ids claimed, or none, so a retry counts each event once."""
        if not events:
            return []
        problems = event_problems(events)
        if problems:
            raise InvalidInput(problems)
        token = uuid.uuid4().hex  # marks this call's claims: a resent attempt finds its own
        pending = first_kept(events)
        while pending:  # each pass drops at least one id taken by another call
            taken = await self._apply_unless_taken(pending, token)
            if not taken:
                break
            pending = [e for n, e in enumerate(pending) if n not in taken]
        applied = {e.event_id for e in pending}
        return [first and e.event_id in applied for e, first in zip(events, first_occurrences(events))]
