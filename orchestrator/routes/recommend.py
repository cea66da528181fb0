"""POST /v1/recommend: decode (msgspec), run the funnel, encode (orjson). The door in front of it
(bounded in-flight requests, 503 with Retry-After beyond) is `orchestrator.admission.AdmissionGate`."""
from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from orchestrator.admission import ARRIVED
from orchestrator.codec import decode_recommend, encode_answer
from orchestrator.deps import get_funnel
from orchestrator.schemas import ErrorBody, RecommendRequest, RecommendResponse

router = APIRouter()


@router.post(
    "/v1/recommend",
    responses={
        200: {"model": RecommendResponse}, 413: {"model": ErrorBody}, 422: {"model": ErrorBody},
        503: {"model": ErrorBody, "description": "not ready, or overloaded (shed, with Retry-After)"},
    },
    openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": RecommendRequest.model_json_schema()}},
    }},
)
async def recommend(request: Request) -> Response:
    arrived = request.scope.get(ARRIVED) or time.perf_counter()
    body = decode_recommend(await request.body())
    answer = await get_funnel(request).recommend(body.user_id, body.k, body.timestamp, arrived)
    return Response(encode_answer(answer), media_type="application/json")
