"""The Triton client's request building, response decoding and error handling: no server needed."""
from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from cascade.specs import LOOKALIKE_INPUTS, PIPELINE_OUTPUT, REQUEST_INPUTS, TWO_STAGE_INPUTS, TWO_STAGE_OUTPUTS
from orchestrator.clients.errors import BackendTimeout, BackendUnavailable
from orchestrator.clients.triton import TritonScorer, _translated, infer_request, raw_outputs, scores_of, two_stage_of

PIPELINE = "rank_pipeline_v3"
TWO_STAGE = "two_stage_p1_r2"


def request_arrays(n: int = 4, history_len: int = 3) -> dict[str, np.ndarray]:
    return {
        "user_id": np.array([[7]], dtype=np.int64),
        "item_ids": (np.arange(n, dtype=np.int64) * 1_000_003)[None, :],
        "history": np.array([[-1] * (history_len - 1) + [2**40]], dtype=np.int64),
        "timestamp": np.array([[1_700_000_000]], dtype=np.int64),
    }


def response(
    scores: np.ndarray, name: str = PIPELINE_OUTPUT.name, datatype: str = "FP32"
) -> service_pb2.ModelInferResponse:
    answer = service_pb2.ModelInferResponse(model_name=PIPELINE, model_version="3")
    answer.outputs.add(name=name, datatype=datatype, shape=[1, scores.shape[0]])
    answer.raw_output_contents.append(scores.tobytes())
    return answer


def rpc_error(code: grpc.StatusCode, details: str = "boom") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


def test_request_names_types_and_shapes_follow_the_spec() -> None:
    arrays = request_arrays(n=5, history_len=3)
    request = infer_request(PIPELINE, arrays)
    assert request.model_name == PIPELINE and request.model_version == ""
    assert [t.name for t in request.inputs] == [spec.name for spec in REQUEST_INPUTS]
    assert [t.datatype for t in request.inputs] == ["INT64"] * 4
    assert [list(t.shape) for t in request.inputs] == [[1, 1], [1, 5], [1, 3], [1, 1]]
    assert [o.name for o in request.outputs] == [PIPELINE_OUTPUT.name]
    assert len(request.raw_input_contents) == 4
    assert not any(t.HasField("contents") for t in request.inputs)  # raw contents only, as Triton wants


def test_request_bytes_round_trip_through_the_wire_format() -> None:
    arrays = request_arrays(n=6)
    wire = service_pb2.ModelInferRequest.FromString(infer_request(PIPELINE, arrays).SerializeToString())
    for tensor, raw in zip(wire.inputs, wire.raw_input_contents, strict=True):
        decoded = np.frombuffer(raw, dtype="<i8").reshape(tuple(tensor.shape))
        np.testing.assert_array_equal(decoded, arrays[tensor.name])


def test_request_converts_other_integer_types_and_strided_views_to_int64() -> None:
    arrays = request_arrays(n=4)
    arrays["item_ids"] = np.arange(8, dtype=np.int32)[None, ::2]  # int32, not contiguous
    request = infer_request(PIPELINE, arrays)
    raw = request.raw_input_contents[[t.name for t in request.inputs].index("item_ids")]
    np.testing.assert_array_equal(np.frombuffer(raw, dtype="<i8"), [0, 2, 4, 6])


def test_scores_decode_to_float32_n() -> None:
    sent = np.array([0.25, -1.5, 3.0e-7, 42.0], dtype=np.float32)
    wire = service_pb2.ModelInferResponse.FromString(response(sent).SerializeToString())
    scores = scores_of(raw_outputs(wire), 4, PIPELINE)
    assert scores.dtype == np.float32 and scores.shape == (4,)
    np.testing.assert_array_equal(scores, sent)


def test_wrong_number_of_scores_raises_naming_the_pipeline() -> None:
    with pytest.raises(RuntimeError, match=f"{PIPELINE} returned 3 scores for 4 items"):
        scores_of(raw_outputs(response(np.zeros(3, dtype=np.float32))), 4, PIPELINE)
    with pytest.raises(RuntimeError, match="other_v1 returned 5 scores for 4 items"):
        scores_of(raw_outputs(response(np.zeros(5, dtype=np.float32))), 4, "other_v1")


def test_wrong_output_or_datatype_raises() -> None:
    with pytest.raises(RuntimeError, match="expected scores FP32"):
        scores_of(raw_outputs(response(np.zeros(4, dtype=np.float64), datatype="FP64")), 4, PIPELINE)
    with pytest.raises(RuntimeError, match="expected scores FP32"):
        scores_of(raw_outputs(response(np.zeros(4, dtype=np.float32), name="logits")), 4, PIPELINE)
    with pytest.raises(RuntimeError, match="0 outputs"):
        scores_of(raw_outputs(service_pb2.ModelInferResponse(model_name=PIPELINE)), 4, PIPELINE)


def two_stage_response(kept, prerank, rank, order=(0, 1, 2)) -> service_pb2.ModelInferResponse:
    answer = service_pb2.ModelInferResponse(model_name="two_stage_p1_r2", model_version="1")
    arrays = [np.asarray(kept, np.int64), np.asarray(prerank, np.float32), np.asarray(rank, np.float32)]
    for i in order:
        spec, array = TWO_STAGE_OUTPUTS[i], arrays[i]
        answer.outputs.add(name=spec.name, datatype="INT64" if spec.dtype == np.int64 else "FP32", shape=[1, len(array)])
        answer.raw_output_contents.append(array.tobytes())
    return answer


def test_two_stage_request_carries_keep_and_asks_for_the_three_outputs() -> None:
    arrays = {**request_arrays(n=4), "keep": np.array([[2]])}
    request = infer_request("two_stage_p1_r2", arrays, TWO_STAGE_INPUTS, TWO_STAGE_OUTPUTS)
    assert [t.name for t in request.inputs] == [t.name for t in TWO_STAGE_INPUTS]
    assert np.frombuffer(request.raw_input_contents[-1], dtype="<i8").tolist() == [2]
    assert [o.name for o in request.outputs] == ["kept", "prerank_scores", "scores"]


def test_a_lookalike_request_carries_the_seeds_embeddings_as_fp32() -> None:
    arrays = {"seed_ids": np.array([[4, 9]]), "seed_embeddings": np.array([[0.5, 1.0, -1.0, 0.25]], np.float64),
              "candidate_ids": np.array([[1, 2, 3]])}
    request = infer_request("lookalike_v1", arrays, LOOKALIKE_INPUTS)
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [
        ("seed_ids", "INT64", [1, 2]), ("seed_embeddings", "FP32", [1, 4]), ("candidate_ids", "INT64", [1, 3])]
    assert np.frombuffer(request.raw_input_contents[1], dtype="<f4").tolist() == [0.5, 1.0, -1.0, 0.25]
    assert np.frombuffer(request.raw_input_contents[2], dtype="<i8").tolist() == [1, 2, 3]


def test_two_stage_answer_decodes_in_any_output_order_and_is_checked() -> None:
    shuffled = two_stage_response([3, 0], [0.9, 0.5], [0.1, 0.7], order=(2, 0, 1))
    got = two_stage_of(raw_outputs(shuffled), n=4, keep=2, model=TWO_STAGE)
    assert got.kept.tolist() == [3, 0] and got.prerank.tolist() == pytest.approx([0.9, 0.5])
    assert got.rank.dtype == np.float32 and got.rank.tolist() == pytest.approx([0.1, 0.7])
    fewer = two_stage_of(raw_outputs(two_stage_response([0], [0.5], [0.2])), n=1, keep=5, model=TWO_STAGE)
    assert len(fewer.kept) == 1  # fewer candidates than keep
    with pytest.raises(RuntimeError, match="two_stage_p1_r2 kept 1 of 4 candidates .* expected 2 each"):
        two_stage_of(raw_outputs(two_stage_response([3], [0.9], [0.1])), n=4, keep=2, model=TWO_STAGE)
    with pytest.raises(RuntimeError, match="indices below 4"):
        two_stage_of(raw_outputs(two_stage_response([4, 0], [0.9, 0.5], [0.1, 0.7])), n=4, keep=2, model=TWO_STAGE)
    with pytest.raises(RuntimeError, match="returned 1 outputs, expected kept, prerank_scores, scores only"):
        two_stage_of(raw_outputs(response(np.zeros(2, np.float32))), n=4, keep=2, model=TWO_STAGE)
    wrong_type = two_stage_response([3, 0], [0.9, 0.5], [0.1, 0.7])
    wrong_type.outputs[0].datatype = "INT32"
    with pytest.raises(RuntimeError, match="returned kept INT32, expected kept INT64, prerank_scores FP32, scores FP32"):
        two_stage_of(raw_outputs(wrong_type), n=4, keep=2, model=TWO_STAGE)


def test_errors_translate_by_status_code() -> None:
    unavailable = _translated(PIPELINE, rpc_error(grpc.StatusCode.UNAVAILABLE, "connection refused"))
    assert isinstance(unavailable, BackendUnavailable) and str(unavailable) == f"triton {PIPELINE}: connection refused"
    late = _translated(PIPELINE, rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    assert isinstance(late, BackendTimeout) and PIPELINE in str(late)
    other = _translated(PIPELINE, rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "item outside the catalogue"))
    assert isinstance(other, InferenceServerException)
    assert PIPELINE in other.message() and "outside the catalogue" in other.message()
    assert other.status() == "StatusCode.INVALID_ARGUMENT"


class FakeStub:
    """ModelInfer answers when `release` is set, with `answer` (a response or an AioRpcError)."""

    def __init__(self, answer: service_pb2.ModelInferResponse | Exception) -> None:
        self.answer = answer
        self.release = asyncio.Event()
        self.requests: list[service_pb2.ModelInferRequest] = []
        self.finished = 0

    async def ModelInfer(  # noqa: N802 (the gRPC method's name)
        self, request: service_pb2.ModelInferRequest, timeout: float
    ) -> service_pb2.ModelInferResponse:
        self.requests.append(request)
        await self.release.wait()
        self.finished += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def scorer_with(stub: FakeStub) -> TritonScorer:
    scorer = TritonScorer("127.0.0.1:9", timeout_s=1.0)  # never connects: the stub answers
    scorer.stub = stub
    return scorer


async def test_score_sends_the_request_and_returns_the_scores() -> None:
    sent = np.array([0.5, 0.25, 0.125], dtype=np.float32)
    stub = FakeStub(response(sent))
    stub.release.set()
    scorer = await scorer_with(stub)
    scores = await scorer.score("rank", 3, 7, np.array([4, 5, 6]), np.array([1, 2, -1]), 1_700_000_000)
    np.testing.assert_array_equal(scores, sent)
    (request,) = stub.requests
    assert request.model_name == PIPELINE
    assert [list(t.shape) for t in request.inputs] == [[1, 1], [1, 3], [1, 3], [1, 1]]
    await scorer.close()


async def test_no_candidates_make_no_call() -> None:
    stub = FakeStub(response(np.zeros(0, dtype=np.float32)))
    scorer = await scorer_with(stub)
    scores = await scorer.score("rank", 3, 7, np.array([], dtype=np.int64), np.array([1]), 0)
    assert scores.shape == (0,) and scores.dtype == np.float32 and stub.requests == []
    await scorer.close()


@pytest.mark.parametrize(("code", "error"), [
    (grpc.StatusCode.UNAVAILABLE, BackendUnavailable),
    (grpc.StatusCode.DEADLINE_EXCEEDED, BackendTimeout),
    (grpc.StatusCode.INTERNAL, InferenceServerException),
])
async def test_score_translates_errors(code: grpc.StatusCode, error: type[Exception]) -> None:
    stub = FakeStub(rpc_error(code))
    stub.release.set()
    scorer = await scorer_with(stub)
    with pytest.raises(error, match=PIPELINE):
        await scorer.score("rank", 3, 7, np.array([4]), np.array([1]), 0)
    await scorer.close()


async def test_score_with_a_short_answer_raises_naming_the_pipeline() -> None:
    stub = FakeStub(response(np.zeros(2, dtype=np.float32)))
    stub.release.set()
    scorer = await scorer_with(stub)
    with pytest.raises(RuntimeError, match=f"{PIPELINE} returned 2 scores for 3 items"):
        await scorer.score("rank", 3, 7, np.array([4, 5, 6]), np.array([1]), 0)
    await scorer.close()


async def test_a_cancelled_caller_leaves_the_call_running_to_completion() -> None:
    stub = FakeStub(rpc_error(grpc.StatusCode.UNAVAILABLE))  # a late failure: read, never logged
    scorer = await scorer_with(stub)
    caller = asyncio.create_task(scorer.score("rank", 3, 7, np.array([4]), np.array([1]), 0))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert len(scorer._abandoned) == 1 and stub.finished == 0
    stub.release.set()
    await scorer.close()  # waits for the abandoned call
    assert stub.finished == 1 and not scorer._abandoned
