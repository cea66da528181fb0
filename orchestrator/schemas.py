"""Request and response bodies of the public API."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

MAX_K = 200
Reason = Literal["timeout", "unavailable", "error"]


class Context(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timestamp: StrictInt | None = Field(None, ge=0, description="unix seconds; defaults to now")


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: StrictInt = Field(..., ge=0)
    k: StrictInt = Field(10, ge=1, le=MAX_K)
    context: Context | None = None


class Item(BaseModel):
    item_id: int
    score: float
    category: int
    channel: str


class Degradation(BaseModel):
    """A stage that was skipped (the previous order stood) or answered in part, and why."""

    stage: str
    reason: Reason = Field(description="timeout: over its deadline; unavailable: its server is down; error: it failed")


class RecommendResponse(BaseModel):
    request_id: str
    user_id: int
    cold_start: bool
    items: list[Item]
    model_versions: dict[str, int]
    latency_ms: dict[str, float]
    degraded: list[Degradation]


class ErrorBody(BaseModel):
    error: str
    fields: list[str] = []
