"""The served samples stream against a real redis-server: bounded by bytes as well as by entries."""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from cascade.artifacts import ArtifactPaths
from cascade.features import FeatureTables
from cascade.samples import encode_sample
from cascade.servers.process import free_port
from cascade.servers.redis import start_redis
from cascade.settings import Settings
from orchestrator.clients import keys
from orchestrator.clients.exposure import ExposureStore
from tests.unit.test_samples import served

pytestmark = pytest.mark.integration


async def test_the_samples_stream_stays_within_its_bytes(exported: Settings, tmp_path: Path) -> None:
    """600 answers' samples into a stream with room for ~100 of them by bytes (and 100,000 by count)."""
    sample = served(FeatureTables.load(ArtifactPaths(exported.artifacts_dir).tables), list(range(10)))
    entry = sum(len(k) + len(v) for k, v in encode_sample(sample).items())
    port = free_port()
    server = await asyncio.to_thread(start_redis, port, tmp_path)
    try:
        store = ExposureStore(f"redis://127.0.0.1:{port}/0", 60, 10, samples_max_len=100_000, samples_max_bytes=100 * entry)
        for _ in range(600):
            await store.record_served(1, np.array([0, 1], np.int64), sample)
        length = await store.redis.xlen(keys.SAMPLES)
        assert 100 <= length <= 200  # MAXLEN ~ trims whole stream nodes (100 entries each)
        await store.close()
    finally:
        await asyncio.to_thread(server.stop)
