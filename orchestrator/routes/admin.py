"""Operator endpoints: re-read the recall channel file without a restart."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from orchestrator.deps import get_funnel
from orchestrator.pipeline import Funnel
from orchestrator.schemas import ErrorBody

router = APIRouter(prefix="/admin")


@router.post("/reload-recall")
async def reload_recall(funnel: Funnel = Depends(get_funnel)) -> JSONResponse:
    """Re-read CASCADE_RECALL_CONFIG: 200 with the configuration now in force, or 422 naming the
    problem (the previous configuration stays in force)."""
    channels = funnel.resources.channels
    try:
        channels.reload()
    except ValueError as err:
        return JSONResponse(status_code=422, content=ErrorBody(error=f"recall config not reloaded: {err}").model_dump())
    return JSONResponse(status_code=200, content=channels.describe())
