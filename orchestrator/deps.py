"""Request-scoped access to what the lifespan opened."""
from __future__ import annotations

from fastapi import Request

from orchestrator.pipeline import Funnel


def get_funnel(request: Request) -> Funnel:
    return request.app.state.funnel
