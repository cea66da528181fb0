"""Redis behind the look-alike endpoint: where users are (a GEO set: GEOADD, GEOSEARCH, GEOPOS) and
the embeddings of users re-computed from their live clicks (a string each, with a TTL; the set of
users waiting for it). Keys: `orchestrator.clients.keys`. What a request reads or writes raises
redis-py's failures as the backend errors every client raises (`redis_errors`): a stage that falls
back names its reason as the funnel's do, and a route that cannot write answers 503."""
from __future__ import annotations

import numpy as np

from cascade.lookalike.users import UserTable
from orchestrator.clients import keys
from orchestrator.clients.redis_client import Client
from orchestrator.clients.resp import Batches, redis_errors

LOAD_CHUNK = 10_000  # GEOADD members per command while filling the set from the export


class Places:
    """`batches`: the request path's Redis client (`orchestrator.clients.resp`), which reads a
    GEOSEARCH answer of 2,000 users as hiredis' bytes, turned into arrays by numpy in one go; through
    redis-py's asyncio client the same search took 8-14 ms of the request instead of 2-3."""

    def __init__(self, client: Client, batches: Batches) -> None:
        self.redis, self.batches = client, batches

    async def fill(self, table: UserTable, version: str) -> int:
        """The export's located users into the GEO set, once per users' table (`version`, its hash):
        a process finding the set filled from this table adds nothing, so a location posted since
        stays. Returns the users added."""
        if (await self.redis.get(keys.PLACES_LOADED)) == version.encode():
            return 0
        users = np.flatnonzero(table.located)
        for lo in range(0, len(users), LOAD_CHUNK):
            chunk = users[lo : lo + LOAD_CHUNK]
            values = [x for u in chunk.tolist() for x in (float(table.lon[u]), float(table.lat[u]), u)]
            await self.redis.geoadd(keys.PLACES, values)
        await self.redis.set(keys.PLACES_LOADED, version)
        return len(users)

    async def put(self, user_id: int, lat: float, lon: float) -> None:
        async with redis_errors():
            await self.redis.geoadd(keys.PLACES, [lon, lat, user_id])

    async def nearby(self, lat: float, lon: float, radius_km: float, most: int) -> tuple[np.ndarray, np.ndarray]:
        """(user ids int64, distances km float64) within `radius_km` of the point, nearest first, at most `most`."""
        [found] = await self.batches.execute([
            ("GEOSEARCH", keys.PLACES, "FROMLONLAT", lon, lat, "BYRADIUS", radius_km, "km", "ASC", "COUNT", most, "WITHDIST"),
        ])
        if not found:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        pairs = np.array(found, dtype=bytes)  # [n, 2]: member, distance
        return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.float64)

    async def where(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) of each user, NaN where the set has none."""
        async with redis_errors():
            found = await self.redis.geopos(keys.PLACES, *user_ids.tolist()) if len(user_ids) else []
        lat = np.array([p[1] if p else np.nan for p in found], np.float64)
        lon = np.array([p[0] if p else np.nan for p in found], np.float64)
        return lat, lon


class LiveEmbeddings:
    def __init__(self, client: Client, ttl_s: int) -> None:
        self.redis, self.ttl_s = client, ttl_s

    async def mark(self, user_ids: list[int]) -> None:
        """These users clicked: re-embed them at the next pass."""
        if user_ids:
            async with redis_errors():
                await self.redis.sadd(keys.LIVE_USERS, *user_ids)

    async def take(self, most: int) -> np.ndarray:
        """Up to `most` users waiting for a re-embedding, each handed to one taker only."""
        taken = await self.redis.spop(keys.LIVE_USERS, most)
        return np.array(sorted(int(u) for u in taken or ()), np.int64)

    async def put(self, user_ids: np.ndarray, vectors: np.ndarray) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for user, vector in zip(user_ids.tolist(), np.asarray(vectors, np.float32)):
                pipe.set(keys.live_embedding(user), vector.tobytes(), ex=self.ttl_s)
            await pipe.execute()

    async def get(self, user_ids: np.ndarray, dim: int) -> dict[int, np.ndarray]:
        """The live embeddings Redis holds for these users (absent: none, or expired)."""
        if not len(user_ids):
            return {}
        async with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
            for user in user_ids.tolist():
                pipe.get(keys.live_embedding(user))
            found = await pipe.execute()
        return {u: np.frombuffer(v, np.float32) for u, v in zip(user_ids.tolist(), found) if v is not None and len(v) == 4 * dim}
