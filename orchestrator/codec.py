"""The recommend route's wire format, decoded and encoded without pydantic: msgspec validates the
body in one pass, orjson writes the answer. The pydantic models in `orchestrator.schemas` describe
the same shapes for the OpenAPI document; a unit test keeps the two in step.

The decoder is typed, so it never descends deeper than the body's own shape (3 levels): a nested
array or object where a number belongs is refused at its first byte, whatever its depth.
"""
from __future__ import annotations

import re
from typing import Annotated

import msgspec
import numpy as np
import orjson

from orchestrator.errors import InvalidInput
from orchestrator.funnel import Answer
from orchestrator.schemas import INPUT_INT_MAX, MAX_K, timestamp_problem

# JSON Schema's `integer` (what the OpenAPI document says) includes integer-valued floats such as
# 199.0, so each integer field takes a float too, in the same bounds; `_integral` checks it has no
# fraction. Ids and timestamps are at most INPUT_INT_MAX (9.2e18: they become int64 tensors).
Int64 = Annotated[int, msgspec.Meta(ge=0, le=INPUT_INT_MAX)] | Annotated[float, msgspec.Meta(ge=0, le=INPUT_INT_MAX)]
K = Annotated[int, msgspec.Meta(ge=1, le=MAX_K)] | Annotated[float, msgspec.Meta(ge=1, le=MAX_K)]


class ContextBody(msgspec.Struct, forbid_unknown_fields=True):
    timestamp: Int64 | None = None


class RecommendBody(msgspec.Struct, forbid_unknown_fields=True):
    user_id: Int64
    k: K = 10
    context: ContextBody | None = None

    @property
    def timestamp(self) -> int | None:
        return self.context.timestamp if self.context is not None else None


_DECODER = msgspec.json.Decoder(RecommendBody)
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_NAMED = re.compile(r"field `([^`]+)`")


def _field(message: str) -> str:
    """The dotted field a msgspec error is about: `$.context.timestamp` -> context.timestamp; a missing or
    unknown field is named in the message itself."""
    at = _AT.search(message)
    path = at.group(1) if at else ""
    named = _NAMED.search(message)
    if named and ("missing required" in message or "unknown field" in message):
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return re.sub(r"\[(\d+)\]", r".\1", path) or "body"


def _integer(field: str, value: float) -> int:
    if not value.is_integer():
        raise InvalidInput([(field, f"Expected an integer, got {value!r}")])
    return int(value)


def _integral(body: RecommendBody) -> RecommendBody:
    """`body` with its integer-valued floats made ints; InvalidInput for a fraction."""
    if type(body.user_id) is float:
        body.user_id = _integer("user_id", body.user_id)
    if type(body.k) is float:
        body.k = _integer("k", body.k)
    if body.context is not None and type(body.context.timestamp) is float:
        body.context.timestamp = _integer("context.timestamp", body.context.timestamp)
    return body


def decode_recommend(raw: bytes) -> RecommendBody:
    """The validated body, or InvalidInput naming the field (a 422)."""
    try:
        body = _DECODER.decode(raw)
    except msgspec.ValidationError as err:
        message = str(err)
        raise InvalidInput([(_field(message), _AT.sub("", message))]) from None
    except msgspec.DecodeError as err:
        raise InvalidInput([("body", f"not valid JSON ({err})")]) from None
    if type(body.user_id) is float or type(body.k) is float or body.context is not None:
        return _integral(body)
    return body


def check_timestamp(timestamp: int, now: int, past_s: int) -> None:
    """InvalidInput (a 422) if the context's timestamp lies outside [now - past_s, now + 5 min]."""
    problem = timestamp_problem(timestamp, now, past_s)
    if problem is not None:
        raise InvalidInput([("context.timestamp", problem)])


def encode_answer(answer: Answer) -> bytes:
    ctx, items = answer.ctx, answer.items
    names = items.channel_names
    return orjson.dumps({
        "request_id": ctx.request_id,
        "user_id": ctx.user_id,
        "cold_start": answer.cold_start,
        "items": [
            {"item_id": i, "score": s, "category": c, "channel": names[ch]}
            for i, s, c, ch in zip(
                items.item_ids.tolist(), items.scores.astype(np.float64).tolist(), answer.categories.tolist(),
                items.channels.tolist(),
            )
        ],
        "model_versions": dict(answer.model_versions),
        "scored_by": answer.scored_by,
        "experiment": {"name": ctx.experiment, "arm": ctx.arm} if ctx.experiment is not None else None,
        "latency_ms": dict(answer.latency_ms),
        "degraded": [{"stage": d.stage, "reason": d.reason} for d in answer.degraded],
    })
