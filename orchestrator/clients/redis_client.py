"""The asyncio Redis client every adapter shares: one server, or any node of a Redis Cluster
(CASCADE_REDIS_CLUSTER), whose client routes each command to the node owning its key's slot."""
from __future__ import annotations

from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster

Client = redis.Redis | RedisCluster


def connect(url: str, cluster: bool, **options: Any) -> Client:
    return (RedisCluster if cluster else redis.Redis).from_url(url, **options)
