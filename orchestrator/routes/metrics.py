from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from orchestrator.deps import get_metrics
from orchestrator.metrics import FunnelMetrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(registry: FunnelMetrics = Depends(get_metrics)) -> Response:
    """Prometheus text exposition of this app's registry."""
    body, content_type = registry.exposition()
    return Response(content=body, media_type=content_type)
