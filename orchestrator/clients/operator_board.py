"""What every orchestrator process must agree on, in Redis (`orchestrator.ports.OperatorBoard`): the
active scorer versions (one hash, a field per scorer, so switches of the two scorers made at once in
two processes never overwrite each other), how many recall-config reloads were asked for, and the
experiments in force (one string key holding the whole JSON list: a single-key write, so a change is
never seen half made, on Redis Cluster too)."""
from __future__ import annotations

import logging

import redis.asyncio as redis

from cascade.triton.layout import SCORERS

log = logging.getLogger("cascade.orchestrator")
ACTIVE_VERSIONS_KEY = "cascade:versions:active"
RECALL_RELOADS_KEY = "cascade:recall:reloads"
EXPERIMENTS_KEY = "cascade:experiments"


class RedisOperatorBoard:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    async def read(self) -> dict[str, int]:
        """The written versions; an entry that is not a known scorer with a version >= 1 is left out (logged)."""
        raw = await self.redis.hgetall(ACTIVE_VERSIONS_KEY)
        versions = {}
        for key, value in raw.items():
            scorer, text = (x.decode() if isinstance(x, bytes) else x for x in (key, value))
            if scorer in SCORERS and text.isdigit() and int(text) >= 1:
                versions[scorer] = int(text)
            else:
                log.warning("ignoring %s entry %r = %r: not a scorer and a version >= 1", ACTIVE_VERSIONS_KEY, scorer, text)
        return versions

    async def write(self, scorer: str, version: int) -> None:
        await self.redis.hset(ACTIVE_VERSIONS_KEY, scorer, str(version))

    async def recall_reloads(self) -> int:
        return int(await self.redis.get(RECALL_RELOADS_KEY) or 0)

    async def count_recall_reload(self) -> int:
        return int(await self.redis.incr(RECALL_RELOADS_KEY))

    async def experiments(self) -> str | None:
        """The key's text; bytes that are not UTF-8 come back with replacement characters, which the
        reader then refuses as JSON like any other malformed value."""
        raw = await self.redis.get(EXPERIMENTS_KEY)
        return raw.decode(errors="replace") if isinstance(raw, bytes) else raw

    async def write_experiments(self, text: str) -> None:
        await self.redis.set(EXPERIMENTS_KEY, text)
