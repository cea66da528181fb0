"""Request and response bodies of the public API."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationInfo, field_validator

MAX_K = 200
MAX_FEEDBACK_EVENTS = 500
Reason = Literal["timeout", "unavailable", "error"]


class Context(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timestamp: StrictInt | None = Field(None, ge=0, le=2**63 - 1, description="unix seconds; defaults to now")


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: StrictInt = Field(..., ge=0, le=2**63 - 1)
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


class ExperimentArm(BaseModel):
    name: str = Field(description="the experiment in force (the first of CASCADE_EXPERIMENTS)")
    arm: str = Field(description="the user's arm, the same on every request")


class RecommendResponse(BaseModel):
    request_id: str
    user_id: int
    cold_start: bool
    items: list[Item]
    model_versions: dict[str, int] = Field(description="the version of each model this answer called")
    scored_by: Literal["rank", "prerank", "none"] = Field(
        description="whose scores `items[].score` are: the ranker's, the pre-ranker's (rank skipped), or recall's (both skipped)"
    )
    experiment: ExperimentArm | None = None
    latency_ms: dict[str, float]
    degraded: list[Degradation]


class ErrorBody(BaseModel):
    error: str
    fields: list[str] = []


class FeedbackEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: StrictStr = Field(..., min_length=1, max_length=128, description="idempotency key: a replay is a duplicate")
    request_id: StrictStr = Field(..., max_length=128, description="the /v1/recommend answer the item was in")
    user_id: StrictInt = Field(..., ge=0)
    item_id: StrictInt = Field(..., ge=0)
    type: Literal["impression", "click", "dwell"]
    dwell_ms: StrictInt | None = Field(None, ge=0, validate_default=True, description="required for type dwell, only then")
    timestamp: StrictInt | None = Field(None, ge=0, description="unix seconds; defaults to now")

    @field_validator("dwell_ms")
    @classmethod
    def _only_for_dwell(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("type")  # absent if the type itself was invalid: that error is reported
        if kind == "dwell" and value is None:
            raise ValueError("required for type dwell")
        if kind is not None and kind != "dwell" and value is not None:
            raise ValueError(f"only allowed for type dwell, not {kind}")
        return value


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[FeedbackEvent] = Field(..., min_length=1, max_length=MAX_FEEDBACK_EVENTS)


class FeedbackResponse(BaseModel):
    accepted: int = Field(description="new events, applied")
    duplicates: int = Field(description="events whose event_id was seen before: ignored")
