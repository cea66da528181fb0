"""POST /v1/lookalike: the users most like a seed set (`orchestrator.lookalike`); POST
/v1/users/{user_id}/location: where a user is now (Redis GEO)."""
from __future__ import annotations

import time

import numpy as np
import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from cascade.geo import geohash_cells, geohash_text
from orchestrator.admission import ARRIVED
from orchestrator.deps import get_lookalike
from orchestrator.errors import TOO_LARGE, UNAVAILABLE, UNPROCESSABLE, InvalidInput
from orchestrator.lookalike import LookalikeAnswer, LookalikeQuery, Near, NoSeeds
from orchestrator.schemas import (
    INPUT_INT_MAX, LocationRequest, LocationResponse, LookalikeRequest, LookalikeResponse, parse_body, request_body,
)

router = APIRouter()
GEOHASH_PRECISION = 5


def encode(answer: LookalikeAnswer) -> bytes:
    distances = answer.distance_km.tolist() if answer.distance_km is not None else [None] * len(answer.user_ids)
    return orjson.dumps({
        "request_id": answer.request_id,
        "users": [{"user_id": u, "similarity": s, "distance_km": d, "score": v} for u, s, d, v in zip(
            answer.user_ids.tolist(), answer.similarity.tolist(), distances, answer.score.tolist())],
        "n_seeds": answer.n_seeds, "model_version": answer.model_version, "scored_by": answer.scored_by,
        "cold_start": answer.cold_start,
        "experiment": {"name": answer.experiment[0], "arm": answer.experiment[1]} if answer.experiment else None,
        "latency_ms": answer.latency_ms,
        "degraded": [{"stage": d.stage, "reason": d.reason} for d in answer.degraded],
    })


@router.post(
    "/v1/lookalike",
    responses={200: {"model": LookalikeResponse}, 413: TOO_LARGE, 422: UNPROCESSABLE, 503: UNAVAILABLE},
    openapi_extra=request_body(LookalikeRequest),
)
async def lookalike(request: Request) -> Response:
    started = request.scope.get(ARRIVED) or time.perf_counter()  # a wait at the door counts against the deadline
    body = parse_body(LookalikeRequest, await request.body())
    service = get_lookalike(request)
    n_users, n_items = service.table.n_users, service.likers.n_items
    problem = body.source_problem()
    problems = [("item_id", problem)] if problem is not None else []
    if body.seed_user_ids is not None:
        most = service.settings.lookalike_max_seeds
        if len(body.seed_user_ids) > most:
            problems.append(("seed_user_ids", f"{len(body.seed_user_ids)} seeds, at most {most} (CASCADE_LOOKALIKE_MAX_SEEDS)"))
        problems += [(f"seed_user_ids.{n}", f"user {u} is not a known user (0..{n_users - 1})")
                     for n, u in enumerate(body.seed_user_ids) if u >= n_users]
    if body.item_id is not None and body.item_id >= n_items:
        problems.append(("item_id", f"item {body.item_id} is not in the catalogue (0..{n_items - 1})"))
    if problems:
        raise InvalidInput(problems)
    near = Near(body.near.lat, body.near.lon, body.near.radius_km) if body.near is not None else None
    seeds = np.array(body.seed_user_ids, np.int64) if body.seed_user_ids is not None else None
    try:
        answer = await service.expand(LookalikeQuery(seeds, body.item_id, body.k, near, body.exclude_seeds), started)
    except NoSeeds as err:
        raise InvalidInput([("item_id", str(err))]) from None
    return Response(encode(answer), media_type="application/json")


@router.post(
    "/v1/users/{user_id}/location",
    response_model=LocationResponse,
    responses={413: TOO_LARGE, 422: UNPROCESSABLE, 503: UNAVAILABLE},
    openapi_extra=request_body(LocationRequest),
)
async def location(request: Request, user_id: int = Path(ge=0, le=INPUT_INT_MAX)) -> LocationResponse:
    """The user's place from now on: look-alike requests with `near` find them there."""
    body = parse_body(LocationRequest, await request.body())
    service = get_lookalike(request)
    if user_id >= service.table.n_users:
        raise InvalidInput([("user_id", f"user {user_id} is not a known user (0..{service.table.n_users - 1})")])
    await service.places.put(user_id, body.lat, body.lon)
    cell = geohash_cells(np.array([body.lat]), np.array([body.lon]), GEOHASH_PRECISION)[0]
    return LocationResponse(user_id=user_id, lat=body.lat, lon=body.lon, geohash=geohash_text(cell, GEOHASH_PRECISION))
