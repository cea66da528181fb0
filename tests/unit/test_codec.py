"""The recommend route's wire format: msgspec decoding names the bad field; the answer's JSON shape."""
from __future__ import annotations

import numpy as np
import orjson
import pytest

from cascade.recall.merge import Candidates
from orchestrator.codec import decode_recommend, encode_answer
from orchestrator.context import RequestContext
from orchestrator.errors import InvalidInput
from orchestrator.funnel import Answer
from orchestrator.schemas import RecommendResponse
from orchestrator.stages import Degradation


def test_valid_body_with_defaults_and_context() -> None:
    body = decode_recommend(b'{"user_id": 3}')
    assert (body.user_id, body.k, body.timestamp) == (3, 10, None)
    assert decode_recommend(b'{"user_id": 3, "k": 5, "context": {"timestamp": 7}}').timestamp == 7


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"user_id": 1, "k": 0}', "k"),
        (b'{"user_id": 1, "k": 201}', "k"),
        (b'{"user_id": 1, "k": "10"}', "k"),
        (b'{"user_id": 1, "k": 2.5}', "k"),
        (b'{"user_id": 1, "k": 201.0}', "k"),
        (b'{"k": 10}', "user_id"),
        (b'{"user_id": true}', "user_id"),
        (b'{"user_id": -1}', "user_id"),
        (b'{"user_id": 1, "colour": "red"}', "colour"),
        (b'{"user_id": 1, "context": {"timestamp": "noon"}}', "context.timestamp"),
        (b'{"user_id": 1, "context": {"tz": 1}}', "context.tz"),
        (b'{not json', "body"),
        (b'[1, 2]', "body"),
    ],
)
def test_bad_body_names_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        decode_recommend(raw)
    assert [f for f, _ in err.value.problems] == [field]


def test_integer_valued_floats_decode_as_ints() -> None:
    """JSON Schema's `integer`, what the OpenAPI document says, admits 199.0."""
    body = decode_recommend(b'{"user_id": 3.0, "k": 199.0, "context": {"timestamp": 1e9}}')
    assert (body.user_id, body.k, body.timestamp) == (3, 199, 1_000_000_000)
    assert all(type(v) is int for v in (body.user_id, body.k, body.timestamp))


def test_answer_json_matches_the_documented_response() -> None:
    ctx = RequestContext("abc", 7, 2, 1_700_000_000, {"prerank": 1, "rank": 2}, (), "exp", "a")
    items = Candidates(np.array([5, 9]), np.array([0, 1]), np.array([0.5, 0.25], np.float32), ("ann", "popular"))
    answer = Answer(ctx, False, items, np.array([3, 4]), {"prerank": 1, "rank": 2, "user_tower": 1}, "rank",
                    {"rank": 1.5, "total": 3.0}, [Degradation("rerank", "error")])
    body = orjson.loads(encode_answer(answer))
    RecommendResponse.model_validate(body)  # the OpenAPI document describes what is sent
    assert body["items"] == [
        {"item_id": 5, "score": 0.5, "category": 3, "channel": "ann"},
        {"item_id": 9, "score": 0.25, "category": 4, "channel": "popular"},
    ]
    assert body["experiment"] == {"name": "exp", "arm": "a"} and body["degraded"] == [{"stage": "rerank", "reason": "error"}]
    assert body["scored_by"] == "rank" and body["model_versions"]["rank"] == 2


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"user_id": 9223372036854775808}', "user_id"),
        (b'{"user_id": 9200000000000000001}', "user_id"),
        (b'{"user_id": 9.3e18}', "user_id"),
        (b'{"user_id": 1, "context": {"timestamp": 9223372036854775808}}', "context.timestamp"),
    ],
)
def test_values_outside_int64_are_refused(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        decode_recommend(raw)
    assert [f for f, _ in err.value.problems] == [field]
