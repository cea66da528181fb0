from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from cascade.triton.layout import lookalike_name
from orchestrator.deps import get_funnel
from orchestrator.errors import RETRY_AFTER_S, UNAVAILABLE
from orchestrator.schemas import ErrorBody, Readiness
from orchestrator.service import FunnelService

router = APIRouter()


@router.get("/healthz", responses={503: UNAVAILABLE})
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={
    200: {"model": Readiness},
    503: {**UNAVAILABLE, "model": Readiness | ErrorBody, "description": "not ready: the checks, or why there are none"},
})
async def readyz(request: Request, funnel: FunnelService = Depends(get_funnel)) -> JSONResponse:
    """Readiness: the pipelines of the active scorer versions (and the look-alike scorer, where the
    export has one) ready, Redis reachable, recall index loaded; 503 until then."""
    lookalike = getattr(request.app.state, "lookalike", None)
    models = funnel.versions.pipelines() + ([lookalike_name(lookalike.version)] if lookalike is not None else [])
    triton = await funnel.scorer.ready(models)
    checks = {
        "triton": {"ready": all(triton.values()), "models": triton},
        "redis": {"ready": await funnel.exposure.ping()},
        "index": {"ready": funnel.resources.ann.index.ntotal > 0, "items": int(funnel.resources.ann.index.ntotal)},
    }
    ready = all(c["ready"] for c in checks.values())
    headers = None if ready else {"Retry-After": str(RETRY_AFTER_S)}
    return JSONResponse(status_code=200 if ready else 503, content={"ready": ready, **checks}, headers=headers)
