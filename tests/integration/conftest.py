from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from cascade.settings import Settings
from orchestrator.app import build_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
async def client(exported: Settings, triton, redis_server) -> AsyncIterator[httpx.AsyncClient]:
    """The orchestrator in process, lifespan and all, talking to the real servers."""
    app = build_app(exported)
    async with LifespanManager(app, startup_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cascade.test", timeout=30) as http:
            yield http
