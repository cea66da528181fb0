"""Operator endpoints: re-read the recall channel file, see and switch the scorer versions served.

With CASCADE_ADMIN_TOKEN set, each needs `Authorization: Bearer <token>` (else a 401).
"""
from __future__ import annotations

import hmac
from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from cascade.triton.layout import SCORERS
from orchestrator.deps import get_funnel, get_metrics
from orchestrator.errors import UNAVAILABLE, Unauthorized
from orchestrator.metrics import FunnelMetrics
from orchestrator.service import FunnelService
from orchestrator.schemas import ErrorBody, integral, parse_body, request_body
from orchestrator.versions import VersionNotServable, servable_versions

def require_admin(request: Request, funnel: FunnelService = Depends(get_funnel)) -> None:
    token = funnel.settings.admin_token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given or not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise Unauthorized("this endpoint needs Authorization: Bearer <CASCADE_ADMIN_TOKEN>")


router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], responses={401: {"model": ErrorBody}, 503: UNAVAILABLE})


class Activate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Annotated[StrictInt, Field(ge=1, le=2**31 - 1), BeforeValidator(integral)] = Field(
        ..., description="the scorer version new requests should call"
    )


@router.post("/reload-recall")
async def reload_recall(funnel: FunnelService = Depends(get_funnel), metrics: FunnelMetrics = Depends(get_metrics)) -> JSONResponse:
    """Re-read CASCADE_RECALL_CONFIG: 200 with the configuration now in force, or 422 naming the
    problem (the previous configuration stays in force). The other orchestrator processes re-read it
    within CASCADE_VERSIONS_POLL_S."""
    try:
        in_force = funnel.reload_recall()
    except ValueError as err:
        metrics.count_recall_reload(ok=False)
        return JSONResponse(status_code=422, content=ErrorBody(error=f"recall config not reloaded: {err}").model_dump())
    metrics.count_recall_reload(ok=True)
    await funnel.share_recall_reload()
    return JSONResponse(status_code=200, content=in_force)


@router.get("/models")
async def models(funnel: FunnelService = Depends(get_funnel)) -> dict:
    """Per scorer: the version new requests call, the versions experiment arms pin, and the versions
    Triton could serve now."""
    index = await funnel.scorer.loaded()
    return {
        s: {"active": funnel.versions.active[s], "pinned": funnel.pinned_versions(s), "servable": servable_versions(index, s)}
        for s in SCORERS
    }


Scorer = Literal["prerank", "rank"]  # cascade.triton.layout.SCORERS, as the OpenAPI's enum
assert set(get_args(Scorer)) == set(SCORERS)


@router.post(
    "/models/{scorer}/activate", responses={409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    openapi_extra=request_body(Activate),
)
async def activate(
    scorer: Scorer, request: Request, funnel: FunnelService = Depends(get_funnel), metrics: FunnelMetrics = Depends(get_metrics)
) -> JSONResponse:
    """Load `version` through Triton's model-control API, warm it, then move new requests to it.

    200 {scorer, version, previous}; 409 if Triton cannot serve that version (nothing changes); 422
    for a scorer that is not one of the enum.
    """
    body = parse_body(Activate, await request.body())
    try:
        previous = await funnel.versions.activate(funnel.scorer, scorer, body.version, funnel.switch_warm_up(scorer))
    except VersionNotServable as err:
        metrics.count_version_switch(scorer, ok=False)
        return JSONResponse(status_code=409, content=ErrorBody(error=str(err)).model_dump())
    metrics.count_version_switch(scorer, ok=True)
    metrics.set_active_versions(funnel.versions.active)
    return JSONResponse(status_code=200, content={"scorer": scorer, "version": body.version, "previous": previous})
