"""POST /v1/feedback: a batch of impressions, clicks and dwells, deduplicated by event id, within each
client's rate (a token bucket per client in Redis, `orchestrator.clients.ratelimit`: a 429 beyond)."""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from fastapi import APIRouter, Request

from cascade.feedback import Event
from orchestrator.deps import get_feedback, get_feedback_limiter, get_funnel, get_live_embeddings, get_metrics
from orchestrator.errors import TOO_LARGE, TOO_MANY, UNAVAILABLE, UNPROCESSABLE, InvalidInput, RateLimited
from orchestrator.schemas import FeedbackRequest, FeedbackResponse, parse_body, request_body, timestamp_problem

router = APIRouter()
log = logging.getLogger("cascade.orchestrator")


def refused(
    body: FeedbackRequest, n_items: int, now: int, past_s: int, issued: Callable[[str, int], bool]
) -> list[tuple[str, str]]:
    """What the schema cannot judge: items outside the catalogue, timestamps outside the window, and
    request ids this service did not issue to the event's user (labels are kept only for answers it
    gave; an empty request id is "unknown": the event counts, no label is kept)."""
    problems = []
    for n, e in enumerate(body.events):
        if e.request_id and not issued(e.request_id, e.user_id):
            problems.append((f"events.{n}.request_id", f"not a request id this service issued to user {e.user_id}"))
        if e.item_id >= n_items:
            problems.append((f"events.{n}.item_id", f"item {e.item_id} is not in the catalogue (0..{n_items - 1})"))
        problem = timestamp_problem(e.timestamp, now, past_s) if e.timestamp is not None else None
        if problem is not None:
            problems.append((f"events.{n}.timestamp", problem))
    return problems


async def within_rate(request: Request, client_header: str | None, events: int) -> None:
    """Spend `events` tokens of the client's bucket, or raise RateLimited (a 429 with Retry-After)."""
    limiter = get_feedback_limiter(request)
    if limiter is None:
        return
    client = (request.headers.get(client_header) if client_header else None) or (request.client.host if request.client else "?")
    verdict = await limiter.spend(client, events)
    if not verdict.allowed:
        raise RateLimited(verdict.retry_after_s, f"client {client} is over its feedback rate; retry in {verdict.retry_after_s} s")


async def mark_clickers(request: Request, users: list[int]) -> None:
    """Users with new clicks, for their look-alike re-embedding (`orchestrator.live_embeddings`). The
    events are applied already: a failure here is logged, not answered."""
    live = get_live_embeddings(request)
    if live is None or not users:
        return
    try:
        await live.mark(sorted(set(users)))
    except Exception as err:  # noqa: BLE001 - the clicks count; the embedding waits for the next click
        log.warning("clickers not queued for re-embedding: %s", err)


@router.post(
    "/v1/feedback",
    response_model=FeedbackResponse,
    responses={413: TOO_LARGE, 422: UNPROCESSABLE, 429: TOO_MANY, 503: UNAVAILABLE},
    openapi_extra=request_body(FeedbackRequest),
)
async def feedback(request: Request) -> FeedbackResponse:
    """Input is judged before readiness, as on /v1/recommend: a bad batch is a 422 even while not ready."""
    body = parse_body(FeedbackRequest, await request.body())
    funnel, store, metrics = get_funnel(request), get_feedback(request), get_metrics(request)
    now = int(time.time())
    problems = refused(body, funnel.resources.tables.n_items, now, funnel.settings.label_ttl_s, funnel.issued)
    if problems:
        raise InvalidInput(problems)
    events = [
        Event(e.event_id, e.user_id, e.item_id, e.type, e.timestamp if e.timestamp is not None else now,
              e.request_id, e.dwell_ms or 0)
        for e in body.events
    ]
    await within_rate(request, funnel.settings.feedback_client_header, len(events))
    fresh = await store.record(events)
    metrics.count_feedback(Counter((e.type, "accepted" if new else "duplicate") for e, new in zip(events, fresh)))
    await mark_clickers(request, [e.user_id for e, new in zip(events, fresh) if new and e.type == "click"])
    accepted = sum(fresh)
    return FeedbackResponse(accepted=accepted, duplicates=len(events) - accepted)
