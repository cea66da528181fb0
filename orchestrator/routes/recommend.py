from __future__ import annotations

from fastapi import APIRouter, Depends

from orchestrator.deps import get_funnel
from orchestrator.pipeline import Funnel
from orchestrator.schemas import ErrorBody, RecommendRequest, RecommendResponse

router = APIRouter()


@router.post(
    "/v1/recommend",
    response_model=RecommendResponse,
    responses={413: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def recommend(body: RecommendRequest, funnel: Funnel = Depends(get_funnel)) -> RecommendResponse:
    return await funnel.recommend(body)
