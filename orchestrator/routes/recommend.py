"""POST /v1/recommend: decode (msgspec), pass the door (admission), run the funnel, encode (orjson)."""
from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from orchestrator.codec import decode_recommend, encode_answer
from orchestrator.deps import get_admission, get_funnel, get_metrics
from orchestrator.errors import overloaded
from orchestrator.schemas import ErrorBody, RecommendRequest, RecommendResponse

router = APIRouter()
RETRY_AFTER_S = 1


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
    started = time.perf_counter()
    body = decode_recommend(await request.body())
    funnel, admission = get_funnel(request), get_admission(request)
    if not await admission.enter():
        get_metrics(request).count_shed()
        return overloaded(RETRY_AFTER_S)
    try:
        answer = await funnel.recommend(body.user_id, body.k, body.timestamp, started)
    finally:
        admission.leave()
    return Response(encode_answer(answer), media_type="application/json")
