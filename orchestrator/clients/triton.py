"""Triton: score one user's candidates through a pipeline or the two-stage model, over HTTP with
binary tensors (`orchestrator.clients.kserve_http`, the orchestrator's default: ~0.3 ms less client
CPU per call than grpc.aio) or over gRPC (grpc.aio, tritonclient's generated protobufs and stub);
and the model-control calls (load, repository index) behind a version switch, over gRPC; readiness
goes the way scoring calls go.

A call is never cancelled. Triton 2.49-2.54 (ours is 2.51) can crash with SIGSEGV when gRPC calls are
cancelled under load (triton-inference-server/server#7368, #8034); we saw it here under a load test
with the production stage budgets, whose timeouts cancelled thousands of calls. So a caller that
stops waiting (its stage deadline passed) leaves the call running to completion in the background
(over HTTP, its connection returns to the pool after); the server does that work for nothing, which
is the price of not crashing. (Shedding it server-side through a queue policy's per-request timeout
was tried: that policy stalled Triton 2.51's batcher, see `cascade.triton.config`.) The client
timeout (`timeout_s`, 2 s by default) stays as a last resort against a hung server.

gRPC requests are built and answers read straight from the protobufs (`infer_request`,
`raw_outputs`) rather than through tritonclient's `InferInput`/`InferResult` objects: the same
messages on the wire, with ~0.05-0.1 ms less client CPU per call; what remains is gRPC's own cost per
call (~0.45 ms). Either way, a request whose scorer versions have a two-stage model makes one call
(`score_two_stage`) instead of two.
"""
from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from cascade.specs import (
    KEPT,
    LOOKALIKE_INPUTS,
    PIPELINE_OUTPUT,
    PRERANK_SCORES,
    REQUEST_INPUTS,
    TWO_STAGE_INPUTS,
    TWO_STAGE_OUTPUTS,
    TensorSpec,
)
from cascade.triton.layout import lookalike_name, pipeline_name, two_stage_name
from cascade.triton.two_stage import TwoStageScores
from orchestrator.clients.errors import BackendTimeout, BackendUnavailable
from orchestrator.clients.kserve_http import HttpInference, RawOutput, wire_type

MAX_MESSAGE_BYTES = 2**31 - 1  # tritonclient's own default
LOAD_TIMEOUT_S = 120.0  # loading a model version starts Python stubs and ONNX sessions

_INT64 = np.dtype("<i8")  # Triton's raw tensor contents are little-endian


def channel_args(max_reconnect_backoff_ms: int) -> list[tuple[str, int]]:
    """gRPC channel options: tritonclient's message limits, and a short reconnect backoff.

    gRPC's default backoff grows to two minutes while a server is down, so a restarted Triton
    would go unused for that long; capping it lets the funnel stop degrading within about a second.
    """
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", min(1_000, max_reconnect_backoff_ms)),
        ("grpc.max_reconnect_backoff_ms", max_reconnect_backoff_ms),
    ]


def infer_request(
    model: str, arrays: Mapping[str, np.ndarray], inputs: Sequence[TensorSpec] = REQUEST_INPUTS,
    outputs: Sequence[TensorSpec] = (PIPELINE_OUTPUT,),
) -> service_pb2.ModelInferRequest:
    """The ModelInfer request for `model`: the tensors of `inputs` in their order and types, taken from
    `arrays` by name (with their batch dimension, e.g. [1, n]), as raw contents; `outputs` requested."""
    request = service_pb2.ModelInferRequest(model_name=model)
    for spec in inputs:
        datatype, wire = wire_type(spec.dtype)
        array = np.ascontiguousarray(arrays[spec.name], dtype=wire)
        request.inputs.add(name=spec.name, datatype=datatype, shape=array.shape)
        request.raw_input_contents.append(array.tobytes())
    for spec in outputs:
        request.outputs.add(name=spec.name)
    return request


def raw_outputs(response: service_pb2.ModelInferResponse) -> list[RawOutput]:
    """(name, datatype, raw contents) of each output of a ModelInfer response."""
    if len(response.raw_output_contents) != len(response.outputs):
        raise RuntimeError(f"{response.model_name} returned {len(response.outputs)} outputs with "
                           f"{len(response.raw_output_contents)} raw contents")
    return [(o.name, o.datatype, raw) for o, raw in zip(response.outputs, response.raw_output_contents)]


def outputs_of(raw: Sequence[RawOutput], outputs: Sequence[TensorSpec], model: str) -> dict[str, np.ndarray]:
    """The 1-d `outputs` of an answer by name (read-only, over its bytes), whichever protocol brought
    it. Raises RuntimeError naming the model when the outputs differ."""
    want = {spec.name: wire_type(spec.dtype) for spec in outputs}
    if len(raw) != len(want):
        raise RuntimeError(f"{model} returned {len(raw)} outputs, expected {', '.join(want)} only")
    got = {}
    for name, datatype, contents in raw:
        if name not in want or datatype != want[name][0]:
            expected = ", ".join(f"{n} {d}" for n, (d, _) in want.items())
            raise RuntimeError(f"{model} returned {name} {datatype}, expected {expected}")
        got[name] = np.frombuffer(contents, dtype=want[name][1])
    return got


def scores_of(raw: Sequence[RawOutput], n: int, model: str) -> np.ndarray:
    """float32 [n] scores from a pipeline's answer for `n` items (read-only, over the answer's bytes).
    Raises RuntimeError naming the model when the answer is not n FP32 scores."""
    scores = outputs_of(raw, (PIPELINE_OUTPUT,), model)[PIPELINE_OUTPUT.name]
    if len(scores) != n:
        raise RuntimeError(f"{model} returned {len(scores):g} scores for {n} items")
    return scores


def two_stage_of(raw: Sequence[RawOutput], n: int, keep: int, model: str) -> TwoStageScores:
    """The two-stage model's answer for `n` candidates and `keep`: min(n, keep) kept indices, each
    in range, with as many pre-rank and rank scores. Raises RuntimeError naming the model otherwise."""
    out = outputs_of(raw, TWO_STAGE_OUTPUTS, model)
    kept, prerank, rank = out[KEPT.name], out[PRERANK_SCORES.name], out[PIPELINE_OUTPUT.name]
    m = min(n, keep)
    if not len(kept) == len(prerank) == len(rank) == m or (m and not 0 <= kept.min() <= kept.max() < n):
        raise RuntimeError(
            f"{model} kept {len(kept)} of {n} candidates with {len(prerank)} pre-rank and "
            f"{len(rank)} rank scores, expected {m} each, indices below {n}"
        )
    return TwoStageScores(kept, prerank, rank)


def _translated(name: str, err: grpc.aio.AioRpcError) -> Exception:
    """UNAVAILABLE and DEADLINE_EXCEEDED as the funnel's backend errors; anything else as the
    InferenceServerException tritonclient raised, its message naming `name`."""
    code = err.code()
    message = f"triton {name}: {err.details()}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendUnavailable(message)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendTimeout(message)
    return InferenceServerException(msg=message, status=str(code), debug_details=err.debug_error_string())


def request_arrays(user_id: int, item_ids: np.ndarray, history: np.ndarray, timestamp: int) -> dict[str, np.ndarray]:
    """One request's `REQUEST_INPUTS`, each with its batch dimension of 1."""
    return {
        "user_id": np.array([[user_id]], dtype=_INT64),
        "item_ids": item_ids.reshape(1, -1),
        "history": history.reshape(1, -1),
        "timestamp": np.array([[timestamp]], dtype=_INT64),
    }


class TritonScorer:
    """Scoring calls over HTTP (`orchestrator.clients.kserve_http`) when given `http`, else over gRPC;
    model control always over gRPC."""

    def __init__(
        self, url: str, timeout_s: float, max_reconnect_backoff_ms: int = 1_000, http: HttpInference | None = None,
    ) -> None:
        self.channel = grpc.aio.insecure_channel(url, options=channel_args(max_reconnect_backoff_ms))
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.timeout_s = timeout_s
        self.http = http
        self._abandoned: set[asyncio.Future] = set()  # calls whose caller stopped waiting; kept until done

    async def score(
        self, scorer: str, version: int, user_id: int, item_ids: np.ndarray, history: np.ndarray, timestamp: int,
    ) -> np.ndarray:
        """float32 [n] scores from `scorer`'s pipeline pinned at `version` (`orchestrator.ports.Scorer`).
        Cancelling the caller (its deadline passed) leaves the call running. No candidates, no call:
        a batching GPU scorer cannot take a batch of zero rows."""
        if item_ids.shape[0] == 0:
            return np.empty(0, np.float32)
        pipeline = pipeline_name(scorer, version)
        arrays = request_arrays(user_id, item_ids, history, timestamp)
        return scores_of(await self._infer(pipeline, arrays, REQUEST_INPUTS, (PIPELINE_OUTPUT,)), item_ids.shape[0], pipeline)

    async def score_two_stage(
        self, versions: Mapping[str, int], user_id: int, item_ids: np.ndarray, history: np.ndarray, timestamp: int,
        keep: int,
    ) -> TwoStageScores:
        """Pre-rank -> the best `keep` -> rank in one call to the two-stage model of `versions`
        (`orchestrator.ports.Scorer`). Cancelling the caller leaves the call running."""
        model = two_stage_name(versions["prerank"], versions["rank"])
        arrays = {**request_arrays(user_id, item_ids, history, timestamp), "keep": np.array([[keep]], dtype=_INT64)}
        raw = await self._infer(model, arrays, TWO_STAGE_INPUTS, TWO_STAGE_OUTPUTS)
        return two_stage_of(raw, item_ids.shape[0], keep, model)

    async def score_lookalike(self, version: int, seeds: np.ndarray, seed_embeddings: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """float32 [C]: each candidate's probability of joining the seeds' audience, from the look-alike
        scorer's `version` (`orchestrator.ports.AudienceScorer`). Cancelling the caller leaves the call running."""
        if candidates.shape[0] == 0:
            return np.empty(0, np.float32)
        model = lookalike_name(version)
        arrays = {"seed_ids": seeds.reshape(1, -1), "seed_embeddings": np.asarray(seed_embeddings, np.float32).reshape(1, -1),
                  "candidate_ids": candidates.reshape(1, -1)}
        return scores_of(await self._infer(model, arrays, LOOKALIKE_INPUTS, (PIPELINE_OUTPUT,)), candidates.shape[0], model)

    async def _infer(
        self, model: str, arrays: Mapping[str, np.ndarray], inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
    ) -> list[RawOutput]:
        if self.http is not None:
            answer = self.http.infer(model, [(t.name, np.asarray(arrays[t.name], t.dtype)) for t in inputs], [t.name for t in outputs])
        else:
            answer = self._grpc_infer(infer_request(model, arrays, inputs, outputs))
        call = asyncio.ensure_future(answer)
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            self._abandon(call)
            raise
        except grpc.aio.AioRpcError as err:
            raise _translated(model, err) from err

    async def _grpc_infer(self, request: service_pb2.ModelInferRequest) -> list[RawOutput]:
        return raw_outputs(await self.stub.ModelInfer(request, timeout=self.timeout_s))

    def _abandon(self, call: asyncio.Future) -> None:
        """Let `call` finish unobserved: keep a reference until it is done, and read its outcome."""
        self._abandoned.add(call)

        def finished(done: asyncio.Future) -> None:
            self._abandoned.discard(done)
            if not done.cancelled():
                done.exception()  # a late failure nobody waits for: read, so asyncio does not log it

        call.add_done_callback(finished)

    async def ready(self, models: list[str]) -> dict[str, bool]:
        """Per model, whether Triton can infer with it, asked the way scoring calls go."""
        if self.http is not None:
            return {name: await self.http.ready(name) for name in models}
        status = {}
        for name in models:
            try:
                response = await self.stub.ModelReady(service_pb2.ModelReadyRequest(name=name), timeout=self.timeout_s)
                status[name] = bool(response.ready)
            except Exception:  # any transport error means "not ready", which /readyz reports
                status[name] = False
        return status

    async def load(self, model: str) -> None:
        """Model control: (re)load `model`, picking up version directories added since. Triton keeps
        serving the versions already loaded while it loads, and keeps them if the load fails."""
        try:
            await self.stub.RepositoryModelLoad(
                service_pb2.RepositoryModelLoadRequest(model_name=model), timeout=LOAD_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as err:
            raise _translated(model, err) from err

    async def loaded(self) -> list[tuple[str, int, str]]:
        """(model, version, state) of every model version Triton knows, from its repository index."""
        try:
            index = await self.stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=self.timeout_s)
        except grpc.aio.AioRpcError as err:
            raise _translated("repository index", err) from err
        return [(m.name, int(m.version), m.state) for m in index.models if m.version.isdigit()]

    async def close(self) -> None:
        if self._abandoned:  # let late calls end before the channel closes under them
            await asyncio.wait(list(self._abandoned), timeout=self.timeout_s)
        if self.http is not None:
            self.http.close()
        await self.channel.close()
