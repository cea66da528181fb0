"""Request-scoped access to what the lifespan opened."""
from __future__ import annotations

from fastapi import Request

from orchestrator.clients.audience import LiveEmbeddings
from orchestrator.clients.feedback import FeedbackStore
from orchestrator.clients.ratelimit import RateLimiter
from orchestrator.errors import NotReady
from orchestrator.lookalike import LookalikeService
from orchestrator.metrics import FunnelMetrics
from orchestrator.service import FunnelService


def get_funnel(request: Request) -> FunnelService:
    funnel = getattr(request.app.state, "funnel", None)
    if funnel is None:
        raise NotReady("the funnel is not loaded: the app's lifespan has not started or its startup failed")
    return funnel


def get_lookalike(request: Request) -> LookalikeService:
    service = getattr(request.app.state, "lookalike", None)
    if service is None:
        raise NotReady("look-alike is not loaded: the app's lifespan has not started, its startup failed, or the "
                       "export has no users' table (re-run `python -m export`)")
    return service


def get_metrics(request: Request) -> FunnelMetrics:
    return request.app.state.metrics


def get_feedback(request: Request) -> FeedbackStore:
    store = getattr(request.app.state, "feedback", None)
    if store is None:
        raise NotReady("the feedback store is not open: the app's lifespan has not started or its startup failed")
    return store


def get_feedback_limiter(request: Request) -> RateLimiter | None:
    """The feedback rate limiter the lifespan opened; None in an app built without its lifespan (tests
    that stand fakes in for the servers), which then limits nothing."""
    return getattr(request.app.state, "feedback_limiter", None)


def get_live_embeddings(request: Request) -> LiveEmbeddings | None:
    """Where clickers are queued for re-embedding; None in an app built without its lifespan."""
    return getattr(request.app.state, "live_embeddings", None)
