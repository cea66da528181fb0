from __future__ import annotations

import time
from collections import Counter

from fastapi import APIRouter, Depends

from cascade.feedback import Event
from orchestrator.clients.feedback import FeedbackStore
from orchestrator.deps import get_feedback, get_funnel, get_metrics
from orchestrator.errors import InvalidInput
from orchestrator.metrics import FunnelMetrics
from orchestrator.service import FunnelService
from orchestrator.schemas import ErrorBody, FeedbackRequest, FeedbackResponse

router = APIRouter()


@router.post(
    "/v1/feedback",
    response_model=FeedbackResponse,
    responses={413: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def feedback(
    body: FeedbackRequest, funnel: FunnelService = Depends(get_funnel), store: FeedbackStore = Depends(get_feedback),
    metrics: FunnelMetrics = Depends(get_metrics),
) -> FeedbackResponse:
    n_items = funnel.resources.tables.n_items
    outside = [
        (f"events.{n}.item_id", f"item {e.item_id} is not in the catalogue (0..{n_items - 1})")
        for n, e in enumerate(body.events) if e.item_id >= n_items
    ]
    if outside:
        raise InvalidInput(outside)
    now = int(time.time())
    events = [
        Event(e.event_id, e.user_id, e.item_id, e.type, e.timestamp if e.timestamp is not None else now,
              e.request_id, e.dwell_ms or 0)
        for e in body.events
    ]
    fresh = await store.record(events)
    metrics.count_feedback(Counter((e.type, "accepted" if new else "duplicate") for e, new in zip(events, fresh)))
    accepted = sum(fresh)
    return FeedbackResponse(accepted=accepted, duplicates=len(events) - accepted)
