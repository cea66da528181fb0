"""POST /v1/recommend: decode (msgspec), run the funnel, encode (orjson). The door in front of it
(bounded in-flight requests, 503 with Retry-After beyond) is `orchestrator.admission.AdmissionGate`."""
from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from orchestrator.admission import ARRIVED
from orchestrator.codec import check_timestamp, decode_recommend, encode_answer
from orchestrator.deps import get_funnel
from orchestrator.errors import TOO_LARGE, UNAVAILABLE, UNPROCESSABLE
from orchestrator.schemas import RecommendRequest, RecommendResponse, request_body

router = APIRouter()


@router.post(
    "/v1/recommend",
    responses={200: {"model": RecommendResponse}, 413: TOO_LARGE, 422: UNPROCESSABLE, 503: UNAVAILABLE},
    openapi_extra=request_body(RecommendRequest),
)
async def recommend(request: Request) -> Response:
    arrived = request.scope.get(ARRIVED) or time.perf_counter()
    body = decode_recommend(await request.body())
    funnel = get_funnel(request)
    if body.timestamp is not None:  # a window around now: only a decoder with a clock could check it
        check_timestamp(body.timestamp, int(time.time()), funnel.settings.label_ttl_s)
    answer = await funnel.recommend(body.user_id, body.k, body.timestamp, arrived)
    return Response(encode_answer(answer), media_type="application/json")
