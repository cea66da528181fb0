"""Request and response bodies of the public API."""
from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, ValidationInfo, field_validator,
)

MAX_K = 200
MAX_FEEDBACK_EVENTS = 500
# Ids and timestamps become int64 tensors (< 2**63 ~ 9.22e18). The bound is a round 9.2e18 because the
# OpenAPI document writes bounds as floats, which clients read as the decimal spelled: 2**63 - 1 comes
# out as 9.223372036854776e+18, a value that overflows; 9.2e18 is spelled, and stored, exactly.
INPUT_INT_MAX = 9_200_000_000_000_000_000
MAX_DWELL_MS = 86_400_000  # a day
FUTURE_SLACK_S = 300  # clock skew allowed to a client's timestamp
Reason = Literal["timeout", "unavailable", "error"]
TIMESTAMP_DOC = "unix seconds, within CASCADE_LABEL_TTL_S before now and 5 minutes after (422 outside); defaults to now"


M = TypeVar("M", bound=BaseModel)

def integral(value: Any) -> Any:
    """199.0 as 199: JSON Schema's `integer` includes integer-valued floats, so the API takes them too.
    Anything else goes to the strict int check unchanged (and "7", true, 1.5 are refused there)."""
    return int(value) if type(value) is float and value.is_integer() else value


# `Field` before the validator: after it, pydantic writes `ge`/`le` into the schema verbatim.
Int64 = Annotated[StrictInt, Field(ge=0, le=INPUT_INT_MAX), BeforeValidator(integral)]


def timestamp_problem(timestamp: int, now: int, past_s: int) -> str | None:
    """Why `timestamp` is refused, or None: it must lie within [now - past_s, now + FUTURE_SLACK_S].
    A label older than CASCADE_LABEL_TTL_S joins no sample, and a future-dated one would never expire."""
    if timestamp < now - past_s:
        return f"{timestamp} is more than {past_s} s before now ({now})"
    if timestamp > now + FUTURE_SLACK_S:
        return f"{timestamp} is more than {FUTURE_SLACK_S} s after now ({now})"
    return None


def parse_body(model: type[M], raw: bytes) -> M:
    """`raw` validated as `model`, or a 422 naming the fields. Parsed by pydantic's own JSON reader,
    which refuses nesting deeper than 200 levels before building anything and takes any bytes (not
    UTF-8, not JSON: a 422 too; FastAPI's own body parsing answers those 400, or recurses until a
    RecursionError)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        raise RequestValidationError(err.errors(include_input=False, include_url=False)) from None


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that parses its own body: `model`'s schema with its `$defs` put in
    place, since a `#/$defs/...` reference would resolve against the OpenAPI document's root."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            return inline(defs[ref.rpartition("/")[2]]) if ref.startswith("#/$defs/") else {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


class Context(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timestamp: Int64 | None = Field(None, description=TIMESTAMP_DOC)


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: Int64
    k: Annotated[StrictInt, Field(ge=1, le=MAX_K), BeforeValidator(integral)] = 10
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


# The rule `_only_for_dwell` checks, said in the OpenAPI document (JSON Schema cannot name a field's
# sibling in one property's schema): a dwell carries dwell_ms, the other types none.
DWELL_RULE = {"oneOf": [
    {"properties": {"type": {"const": "dwell"}, "dwell_ms": {"type": "integer"}}, "required": ["dwell_ms"]},
    {"properties": {"type": {"enum": ["impression", "click"]}, "dwell_ms": {"type": "null"}}},
]}


class FeedbackEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=DWELL_RULE)
    event_id: StrictStr = Field(..., min_length=1, max_length=128, description="idempotency key: a replay is a duplicate")
    request_id: StrictStr = Field(..., max_length=128, description="the /v1/recommend answer the item was in")
    user_id: Int64
    item_id: Int64
    type: Literal["impression", "click", "dwell"]
    dwell_ms: Annotated[StrictInt, Field(ge=0, le=MAX_DWELL_MS), BeforeValidator(integral)] | None = Field(
        None, validate_default=True, description="milliseconds, at most a day; required for type dwell, only then"
    )
    timestamp: Int64 | None = Field(None, description=TIMESTAMP_DOC)

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


MAX_LOOKALIKE_K = 1_000
MAX_RADIUS_KM = 50.0
MAX_SEED_USERS = 4_096  # the scorer's limit; CASCADE_LOOKALIKE_MAX_SEEDS is the served one (422 beyond)
Latitude = Annotated[float, Field(strict=True, ge=-90.0, le=90.0, allow_inf_nan=False)]
Longitude = Annotated[float, Field(strict=True, ge=-180.0, le=180.0, allow_inf_nan=False)]


class NearPlace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: Latitude
    lon: Longitude
    radius_km: Annotated[float, Field(strict=True, gt=0.0, le=MAX_RADIUS_KM, allow_inf_nan=False)]


class LookalikeRequest(BaseModel):
    """Either `seed_user_ids` or `item_id` (its users who liked it in training are the seeds): the
    route says which is missing, or that both came, in a 422 naming `item_id`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [{"required": ["seed_user_ids"]}, {"required": ["item_id"]}]})
    seed_user_ids: list[Int64] = Field(None, min_length=1, max_length=MAX_SEED_USERS)  # type: ignore[assignment]
    item_id: Int64 = Field(None, description="seed from the item's likers instead")  # type: ignore[assignment]
    k: Annotated[StrictInt, Field(ge=1, le=MAX_LOOKALIKE_K), BeforeValidator(integral)] = 100
    near: NearPlace = Field(None, description="only users within radius_km of (lat, lon), ordered by the blend")  # type: ignore[assignment]
    exclude_seeds: StrictBool = True

    def source_problem(self) -> str | None:
        if (self.seed_user_ids is None) == (self.item_id is None):
            return "give seed_user_ids or item_id" + (", not both" if self.item_id is not None else "")
        return None


class LookalikeUser(BaseModel):
    user_id: int
    similarity: float = Field(description="the scorer's probability that the user joins the seeds' audience "
                              "(scored_by embedding: cosine with the seeds' mean; rules: demographic match)")
    distance_km: float | None = Field(description="from `near`; null without it")
    score: float = Field(description="the blend of distance and similarity the users are ordered by (similarity without `near`)")


class LookalikeResponse(BaseModel):
    request_id: str
    users: list[LookalikeUser]
    n_seeds: int
    model_version: int
    scored_by: Literal["model", "embedding", "rules"]
    cold_start: bool = Field(description="no seed has behaviour: demographic and location rules chose the users")
    experiment: ExperimentArm | None = None
    latency_ms: dict[str, float]
    degraded: list[Degradation]


class LocationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: Latitude
    lon: Longitude


class LocationResponse(BaseModel):
    user_id: int
    lat: float
    lon: float
    geohash: str = Field(description="the neighbourhood cell (5 characters, about 4.9 km)")


class Check(BaseModel):
    model_config = ConfigDict(extra="allow")
    ready: bool


class Readiness(BaseModel):
    ready: bool = Field(description="all of the checks below")
    triton: Check = Field(description="the pipelines of the active scorer versions, by model")
    redis: Check
    index: Check = Field(description="the recall index, with its item count")
