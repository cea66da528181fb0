"""What every orchestrator process must agree on, in Redis (`orchestrator.ports.OperatorBoard`): the
active scorer versions (one hash, a field per scorer, so switches of the two scorers made at once in
two processes never overwrite each other) and how many recall-config reloads were asked for."""
from __future__ import annotations

import logging

import redis.asyncio as redis

from cascade.triton.layout import SCORERS

log = logging.getLogger("cascade.orchestrator")
ACTIVE_VERSIONS_KEY = "cascade:versions:active"
RECALL_RELOADS_KEY = "cascade:recall:reloads"


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
