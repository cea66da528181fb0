"""The recommend route's wire format, decoded and encoded without pydantic: msgspec validates the
body in one pass, orjson writes the answer. The pydantic models in `orchestrator.schemas` describe
the same shapes for the OpenAPI document; a unit test keeps the two in step."""
from __future__ import annotations

import re
from typing import Annotated

import msgspec
import numpy as np
import orjson

from orchestrator.errors import InvalidInput
from orchestrator.funnel import Answer
from orchestrator.schemas import MAX_K


INT64_MAX = 2**63 - 1  # ids and timestamps become int64 tensors


class ContextBody(msgspec.Struct, forbid_unknown_fields=True):
    timestamp: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)] | None = None


class RecommendBody(msgspec.Struct, forbid_unknown_fields=True):
    user_id: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
    k: Annotated[int, msgspec.Meta(ge=1, le=MAX_K)] = 10
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


def decode_recommend(raw: bytes) -> RecommendBody:
    """The validated body, or InvalidInput naming the field (a 422)."""
    try:
        return _DECODER.decode(raw)
    except msgspec.ValidationError as err:
        message = str(err)
        raise InvalidInput([(_field(message), _AT.sub("", message))]) from None
    except msgspec.DecodeError as err:
        raise InvalidInput([("body", f"not valid JSON ({err})")]) from None


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
