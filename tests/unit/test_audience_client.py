"""The look-alike Redis client fails as every client does: a Redis that is not there is the backend
unavailable, which a request's fallback names `unavailable` and a route answers with a 503."""
from __future__ import annotations

import numpy as np
import pytest
import redis.asyncio as redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cascade.servers.process import free_port
from orchestrator.clients.audience import LiveEmbeddings, Places
from orchestrator.clients.errors import BackendUnavailable
from orchestrator.stages import reason_for


async def test_reads_from_a_redis_that_is_not_there_are_the_backend_unavailable() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(BackendUnavailable) as live_err:
            await LiveEmbeddings(client, 60).get(np.array([1, 2]), 4)
        with pytest.raises(BackendUnavailable):
            await Places(client, None).where(np.array([1]))
        assert reason_for(live_err.value) == "unavailable"
        with pytest.raises(BackendUnavailable):
            await Places(client, None).put(1, 48.85, 2.35)
        with pytest.raises(BackendUnavailable):
            await LiveEmbeddings(client, 60).mark([1])
    finally:
        await client.aclose()
