"""Per-client token buckets in Redis, for `POST /v1/feedback` (a 429 with Retry-After beyond).

A bucket holds at most `burst` tokens and refills at `rate_per_s`; a call costs one token per event.
The bucket lives in one Redis hash per client (`cascade:ratelimit:<client>`: tokens and the time of
the last refill) and is read, refilled and spent by one Lua script on Redis's own clock, so every
orchestrator replica shares it and no two calls spend the same tokens. An idle bucket expires once
it would be full again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import redis.asyncio as redis

from orchestrator.clients.resp import redis_errors

KEY = "cascade:ratelimit:{client}"

# KEYS[1] bucket; ARGV: rate per s, burst, cost. Returns {allowed 0/1, seconds until `cost` tokens are there}.
_SCRIPT = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
if cost <= tokens then tokens = tokens - cost; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
if allowed == 1 then return {1, '0'} end
return {0, tostring((cost - tokens) / rate)}
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int  # whole seconds until the call would be allowed (0 when allowed)


class RateLimiter:
    def __init__(self, client: redis.Redis, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate_per_s > 0 and burst >= 1, got {rate_per_s}, {burst}")
        self.redis, self.rate_per_s, self.burst = client, rate_per_s, burst
        self._script = client.register_script(_SCRIPT)

    async def spend(self, client: str, cost: int) -> Verdict:
        """Take `cost` tokens from `client`'s bucket, or none and say when they will be there. A cost
        over the burst can never be paid: refused with the time to a full bucket."""
        if cost > self.burst:
            return Verdict(False, math.ceil(self.burst / self.rate_per_s))
        async with redis_errors():
            allowed, wait = await self._script(keys=[KEY.format(client=client)], args=[self.rate_per_s, self.burst, cost])
        return Verdict(bool(allowed), 0 if allowed else max(1, math.ceil(float(wait))))
