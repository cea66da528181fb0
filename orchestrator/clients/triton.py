"""Triton over gRPC (tritonclient.grpc.aio): score one user's candidates through a pipeline, and the
model-control calls (load, repository index) behind a version switch."""
from __future__ import annotations

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from cascade.specs import PIPELINE_OUTPUT, REQUEST_INPUTS
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

    async def score(
        self, pipeline: str, user_id: int, item_ids: np.ndarray, history: np.ndarray, timestamp: int,
        timeout_s: float | None = None,
    ) -> np.ndarray:
        """float32 [n] scores; `timeout_s` (default: the client's) becomes the gRPC deadline, so Triton drops late work."""
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
        try:
            result = await self.client.infer(
                pipeline, inputs, outputs=outputs, client_timeout=self.timeout_s if timeout_s is None else timeout_s
            )
        except InferenceServerException as err:
            raise _translated(pipeline, err) from err
        scores = result.as_numpy(PIPELINE_OUTPUT.name)[0]
        if scores.shape != item_ids.shape:
            raise RuntimeError(f"{pipeline} returned {scores.shape[0]} scores for {item_ids.shape[0]} items")
        return scores

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
        await self.client.close()
