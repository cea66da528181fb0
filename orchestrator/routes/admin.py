"""Operator endpoints: re-read the recall channel file, see and switch the scorer versions served, see
and change the A/B experiments in force.

With CASCADE_ADMIN_TOKEN set, each needs `Authorization: Bearer <token>` (else a 401).
"""
from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, StrictInt, StrictStr

from cascade.experiments import MAX_WEIGHT, experiments_json, parse_experiments
from cascade.rerank.registry import OPERATORS
from cascade.triton.layout import SCORERS
from orchestrator.context import ExperimentsInForce, Source
from orchestrator.deps import get_funnel, get_metrics
from orchestrator.errors import TOO_LARGE, UNAVAILABLE, UNPROCESSABLE, Unauthorized
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


Version = Annotated[StrictInt, Field(ge=1, le=2**31 - 1), BeforeValidator(integral)]


class Activate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Version = Field(..., description="the scorer version new requests should call")


class PinnedVersions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prerank: Version | None = None
    rank: Version | None = None
    lookalike: Version | None = Field(None, description="the look-alike scorer's version (POST /v1/lookalike)")


class RerankOperatorSpec(BaseModel):
    """One operator of a rerank chain: its name and its parameters (numbers, or a list of category ids)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, int | float | list[int]]
    name: Literal[tuple(OPERATORS)]  # type: ignore[valid-type]


# Bounds that keep any valid list within CASCADE_ADMIN_MAX_BODY_BYTES (and a report readable).
MAX_EXPERIMENTS, MAX_ARMS, MAX_OPERATORS, MAX_NAME = 8, 16, 16, 64


class ArmSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(..., min_length=1, max_length=MAX_NAME, description="unique within its experiment")
    weight: Annotated[StrictInt, Field(ge=1, le=MAX_WEIGHT), BeforeValidator(integral)] = Field(
        ..., description="the arm's share of users is its weight over the arms' total"
    )
    rerank_chain: list[RerankOperatorSpec] | None = Field(
        None, max_length=MAX_OPERATORS, description="rerank operators in order, as CASCADE_RERANK_CHAIN; absent: CASCADE_RERANK_CHAIN",
    )
    model_versions: PinnedVersions | None = Field(
        None, description="scorer versions the arm calls instead of the active ones (Triton must serve them)",
    )


class ExperimentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(..., min_length=1, max_length=MAX_NAME, description="unique in the list")
    arms: list[ArmSpec] = Field(..., min_length=1, max_length=MAX_ARMS)


class Experiments(RootModel[Annotated[list[ExperimentSpec], Field(max_length=MAX_EXPERIMENTS)]]):
    """CASCADE_EXPERIMENTS' list: the first experiment is in force; [] for none."""


class ExperimentsAnswer(BaseModel):
    source: Source = Field(description="environment: CASCADE_EXPERIMENTS; shared: set through /admin/experiments")
    experiments: list[ExperimentSpec] = Field(description="the first is in force")


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
    """Per scorer: the version new requests call, the versions the arms of the experiment in force pin,
    and the versions Triton could serve now."""
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


def experiments_answer(in_force: ExperimentsInForce) -> dict[str, Any]:
    return {"source": in_force.source, "experiments": experiments_json(in_force.experiments)}


@router.get("/experiments", responses={200: {"model": ExperimentsAnswer}})
async def experiments(funnel: FunnelService = Depends(get_funnel)) -> JSONResponse:
    """The experiments this process serves under (the first is in force), and where they came from."""
    return JSONResponse(status_code=200, content=experiments_answer(funnel.experiments.in_force))


@router.put(
    "/experiments",
    responses={200: {"model": ExperimentsAnswer}, 409: {"model": ErrorBody}, 413: TOO_LARGE, 422: UNPROCESSABLE},
    openapi_extra=request_body(Experiments),
)
async def change_experiments(
    request: Request, funnel: FunnelService = Depends(get_funnel), metrics: FunnelMetrics = Depends(get_metrics)
) -> JSONResponse:
    """Replace the experiments in force with the body (CASCADE_EXPERIMENTS' list; [] for none): written
    to Redis, then served under here; the other orchestrator processes follow within
    CASCADE_VERSIONS_POLL_S, and restarts keep them.

    200 with what is in force now; 422 naming the problem in an invalid list; 409 if an arm of the
    experiment in force pins a scorer version Triton cannot serve now; 503 if Redis cannot be written.
    Nothing changes but on a 200.
    """
    body = parse_body(Experiments, await request.body())
    try:
        in_force = await funnel.experiments.change(funnel.scorer, parse_experiments(body.model_dump(exclude_none=True)))
    except (ValueError, VersionNotServable) as err:
        metrics.count_experiments_change(ok=False)
        status, fields = (422, ["body"]) if isinstance(err, ValueError) else (409, [])
        return JSONResponse(status_code=status, content=ErrorBody(error=f"experiments not changed: {err}", fields=fields).model_dump())
    metrics.count_experiments_change(ok=True)
    return JSONResponse(status_code=200, content=experiments_answer(in_force))
