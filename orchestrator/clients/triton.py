"""Triton over gRPC (tritonclient.grpc.aio): score one user's candidates through a pipeline, and the
model-control calls (load, repository index) behind a version switch.

A call is never cancelled. Triton 2.49-2.54 (ours is 2.51) can crash with SIGSEGV when gRPC calls are
cancelled under load (triton-inference-server/server#7368, #8034); we saw it here under a load test
with the production stage budgets, whose timeouts cancelled thousands of calls. So a caller that
stops waiting (its stage deadline passed) leaves the call running to completion in the background;
the server does that work for nothing, which is the price of not crashing. (Shedding it server-side
through a queue policy's per-request timeout was tried: that policy stalled Triton 2.51's batcher,
see `cascade.triton.config`.) The gRPC deadline (`timeout_s`, 2 s by default) stays as a last
resort against a hung server.
"""
from __future__ import annotations

import asyncio

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from cascade.specs import PIPELINE_OUTPUT, REQUEST_INPUTS
from cascade.triton.layout import pipeline_name
from orchestrator.clients.errors import BackendTimeout, BackendUnavailable

MAX_MESSAGE_BYTES = 2**31 - 1  # tritonclient's own default
LOAD_TIMEOUT_S = 120.0  # loading a model version starts Python stubs and ONNX sessions


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


def _translated(pipeline: str, err: InferenceServerException) -> Exception:
    status = str(err.status() or "")
    if status.endswith("UNAVAILABLE"):
        return BackendUnavailable(f"triton {pipeline}: {err.message()}")
    if status.endswith("DEADLINE_EXCEEDED"):
        return BackendTimeout(f"triton {pipeline}: {err.message()}")
    return err


class TritonScorer:
    def __init__(self, url: str, timeout_s: float, max_reconnect_backoff_ms: int = 1_000) -> None:
        self.client = grpcclient.InferenceServerClient(url, channel_args=channel_args(max_reconnect_backoff_ms))
        self.timeout_s = timeout_s
        self._abandoned: set[asyncio.Future] = set()  # calls whose caller stopped waiting; kept until done

    async def score(
        self, scorer: str, version: int, user_id: int, item_ids: np.ndarray, history: np.ndarray, timestamp: int,
    ) -> np.ndarray:
        """float32 [n] scores from `scorer`'s pipeline pinned at `version` (`orchestrator.ports.Scorer`).
        Cancelling the caller (its deadline passed) leaves the call running."""
        pipeline = pipeline_name(scorer, version)
        arrays = {
            "user_id": np.array([[user_id]], dtype=np.int64),
            "item_ids": item_ids.astype(np.int64)[None, :],
            "history": history.astype(np.int64)[None, :],
            "timestamp": np.array([[timestamp]], dtype=np.int64),
        }
        inputs = []
        for spec in REQUEST_INPUTS:
            tensor = grpcclient.InferInput(spec.name, list(arrays[spec.name].shape), "INT64")
            tensor.set_data_from_numpy(arrays[spec.name])
            inputs.append(tensor)
        outputs = [grpcclient.InferRequestedOutput(PIPELINE_OUTPUT.name)]
        call = asyncio.ensure_future(self.client.infer(pipeline, inputs, outputs=outputs, client_timeout=self.timeout_s))
        try:
            result = await asyncio.shield(call)
        except asyncio.CancelledError:
            self._abandon(call)
            raise
        except InferenceServerException as err:
            raise _translated(pipeline, err) from err
        scores = result.as_numpy(PIPELINE_OUTPUT.name)[0]
        if scores.shape != item_ids.shape:
            raise RuntimeError(f"{pipeline} returned {scores.shape[0]} scores for {item_ids.shape[0]} items")
        return scores

    def _abandon(self, call: asyncio.Future) -> None:
        """Let `call` finish unobserved: keep a reference until it is done, and read its outcome."""
        self._abandoned.add(call)

        def finished(done: asyncio.Future) -> None:
            self._abandoned.discard(done)
            if not done.cancelled():
                done.exception()  # a late failure nobody waits for: read, so asyncio does not log it

        call.add_done_callback(finished)

    async def ready(self, models: list[str]) -> dict[str, bool]:
        status = {}
        for name in models:
            try:
                status[name] = bool(await self.client.is_model_ready(name, client_timeout=self.timeout_s))
            except Exception:  # any transport error means "not ready", which /readyz reports
                status[name] = False
        return status

    async def load(self, model: str) -> None:
        """Model control: (re)load `model`, picking up version directories added since. Triton keeps
        serving the versions already loaded while it loads, and keeps them if the load fails."""
        try:
            await self.client.load_model(model, client_timeout=LOAD_TIMEOUT_S)
        except InferenceServerException as err:
            raise _translated(model, err) from err

    async def loaded(self) -> list[tuple[str, int, str]]:
        """(model, version, state) of every model version Triton knows, from its repository index."""
        index = await self.client.get_model_repository_index(client_timeout=self.timeout_s)
        return [(m.name, int(m.version), m.state) for m in index.models if m.version.isdigit()]

    async def close(self) -> None:
        if self._abandoned:  # let late calls end before the channel closes under them
            await asyncio.wait(list(self._abandoned), timeout=self.timeout_s)
        await self.client.close()
