"""Triton inference over HTTP with binary tensors (the KServe v2 protocol's binary data extension),
on a small pool of keep-alive connections (`orchestrator.clients.http1`).

Measured on this project's calls (perf/README.md): 0.15-0.2 ms of client CPU per call against
0.4-0.5 ms for grpc.aio, the server's CPU the same, and 0.1-0.4 ms less latency. The orchestrator's
one event loop is the process that saturates first, so its inference calls take this path;
readiness is asked over the same connections; model control (load, repository index) stays on gRPC.
The JSON headers go through orjson (the json module was 2 % of the event loop's time).
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import orjson
from tritonclient.utils import InferenceServerException

from orchestrator.clients.errors import BackendTimeout, BackendUnavailable
from orchestrator.clients.http1 import Connection, HttpError, Response

RawOutput = tuple[str, str, bytes]  # name, Triton datatype, raw little-endian contents
_STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


_WIRE = {"i": ("INT64", np.dtype("<i8")), "u": ("INT64", np.dtype("<i8")), "f": ("FP32", np.dtype("<f4"))}


def wire_type(dtype) -> tuple[str, np.dtype]:
    """Triton's name for a tensor of `dtype` and the little-endian dtype its raw contents travel as:
    integers as INT64, floats as FP32 (the two types the project's models take and give)."""
    return _WIRE[np.dtype(dtype).kind]


def encode_infer(host: str, model: str, arrays: Sequence[tuple[str, np.ndarray]], outputs: Sequence[str]) -> bytes:
    """The request's bytes: a JSON header naming each input's type (INT64 for integers, FP32 for
    floats), shape and size and asking for `outputs` as binary data, then the inputs' raw contents in
    that order."""
    types = [wire_type(np.asarray(array).dtype) for _, array in arrays]
    blobs = [np.ascontiguousarray(array, dtype=wire) for (_, array), (_, wire) in zip(arrays, types)]
    header = orjson.dumps({
        "inputs": [
            {"name": name, "shape": list(blob.shape), "datatype": datatype, "parameters": {"binary_data_size": blob.nbytes}}
            for (name, _), blob, (datatype, _) in zip(arrays, blobs, types)
        ],
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
    })
    length = len(header) + sum(blob.nbytes for blob in blobs)
    head = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {len(header)}\r\nContent-Length: {length}\r\n\r\n")
    return b"".join([head.encode("ascii"), header, *(blob.tobytes() for blob in blobs)])


def decode_infer(response: Response, model: str) -> list[RawOutput]:
    """The outputs of an inference answer. A non-200 raises InferenceServerException with Triton's
    message (as a gRPC error other than UNAVAILABLE does); an answer that is not binary tensors
    raises RuntimeError naming the model."""
    body = response.body
    if response.status != 200:
        try:
            message = orjson.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body[:200].decode("utf-8", "replace")
        raise InferenceServerException(msg=f"triton {model}: {message}", status=str(response.status))
    try:
        header_length = int(response.headers.get("inference-header-content-length", len(body)))
        outputs = orjson.loads(body[:header_length])["outputs"]
        offset, raw = header_length, []
        for output in outputs:
            size = int(output["parameters"]["binary_data_size"])
            raw.append((output["name"], output["datatype"], body[offset:offset + size]))
            offset += size
    except (ValueError, KeyError, TypeError) as err:
        raise RuntimeError(f"{model} answered without binary tensors: {err!r}") from err
    if offset != len(body):
        raise RuntimeError(f"{model} answered {len(body)} bytes, its header accounts for {offset}")
    return raw


class HttpInference:
    """Inference calls over a pool of keep-alive connections to Triton's HTTP endpoint: a connection
    carries one call at a time; a pooled one found closed (Triton restarted) is replaced once."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._idle: list[Connection] = []

    async def infer(self, model: str, arrays: Sequence[tuple[str, np.ndarray]], outputs: Sequence[str]) -> list[RawOutput]:
        request = encode_infer(f"{self.host}:{self.port}", model, arrays, outputs)
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._send(request)
        except TimeoutError as err:
            raise BackendTimeout(f"triton {model}: no answer within {self.timeout_s:g} s") from err
        except HttpError as err:
            raise RuntimeError(f"triton {model}: {err}") from err
        except OSError as err:  # refused, reset: the server is down or went away
            raise BackendUnavailable(f"triton {model}: {err}") from err
        return decode_infer(response, model)

    async def ready(self, model: str) -> bool:
        """Whether Triton has `model` ready to infer (its HTTP readiness endpoint answers 200); any
        transport error is "not ready"."""
        request = f"GET /v2/models/{model}/ready HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode("ascii")
        try:
            async with asyncio.timeout(self.timeout_s):
                return (await self._send(request)).status == 200
        except (TimeoutError, OSError, HttpError):
            return False

    async def _send(self, request: bytes) -> Response:
        reused = bool(self._idle)
        connection = self._idle.pop() if reused else Connection(self.host, self.port)
        try:
            response = await connection.request(request)
        except _STALE:
            if not reused:
                raise
            connection = Connection(self.host, self.port)
            response = await connection.request(request)
        if response.keep_alive:
            self._idle.append(connection)
        return response

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
