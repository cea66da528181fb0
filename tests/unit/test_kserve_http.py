"""Triton inference over HTTP with binary tensors, against a fake Triton HTTP endpoint on loopback:
the request's header and tensors, the answer's outputs, errors, the connection pool."""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from orchestrator.clients.errors import BackendTimeout, BackendUnavailable
from orchestrator.clients.http1 import Response
from orchestrator.clients.kserve_http import HttpInference, decode_infer, encode_infer
from orchestrator.clients.triton import TritonScorer

SCORES = np.array([0.5, -1.25, 3.0], np.float32)


def answer(outputs: list[tuple[str, str, bytes]], close: bool = False) -> bytes:
    header = json.dumps({"model_name": "m", "outputs": [
        {"name": n, "datatype": d, "shape": [1, len(raw) // 4], "parameters": {"binary_data_size": len(raw)}}
        for n, d, raw in outputs
    ]}).encode()
    body = header + b"".join(raw for _, _, raw in outputs)
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nInference-Header-Content-Length: {len(header)}\r\n"
            f"Content-Length: {len(body)}\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n")
    return head.encode() + body


class FakeTriton:
    """Reads each request whole, records (path, header, tensors), answers with `reply(request_index)`."""

    def __init__(self, reply: Callable[[int], bytes]) -> None:
        self.reply, self.requests, self.connections = reply, [], 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                split = int(headers.get("inference-header-content-length", 0))
                meta, offset, tensors = json.loads(body[:split]) if split else {"inputs": []}, split, {}
                for tensor in meta["inputs"]:
                    size = tensor["parameters"]["binary_data_size"]
                    tensors[tensor["name"]] = np.frombuffer(body[offset:offset + size], "<i8").reshape(tensor["shape"])
                    offset += size
                self.requests.append((lines[0].split()[1], meta, tensors))
                reply = self.reply(len(self.requests) - 1)
                if reply == b"hang":
                    await asyncio.sleep(10)
                writer.write(reply)
                await writer.drain()
                if b"Connection: close" in reply or reply == b"drop":
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeTriton, int]]:
    triton = FakeTriton(lambda i: answer([("scores", "FP32", SCORES.tobytes())]))
    server = await asyncio.start_server(triton.handle, "127.0.0.1", 0)
    yield triton, server.sockets[0].getsockname()[1]
    server.close()


def test_request_bytes_carry_a_json_header_then_the_raw_int64_and_fp32_tensors() -> None:
    data = encode_infer("h:1", "rank_pipeline_v2", [("item_ids", np.array([[3, 4]], np.int32)), ("keep", np.array([[7]])),
                                                    ("seed_embeddings", np.array([[0.5, -2.0]], np.float64))], ["scores"])
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v2/models/rank_pipeline_v2/infer HTTP/1.1\r\nHost: h:1\r\n")
    split = int(head.split(b"Inference-Header-Content-Length: ")[1].split(b"\r\n")[0])
    assert int(head.split(b"Content-Length: ")[-1]) == len(body) == split + 32
    meta = json.loads(body[:split])
    assert meta["inputs"] == [
        {"name": "item_ids", "shape": [1, 2], "datatype": "INT64", "parameters": {"binary_data_size": 16}},
        {"name": "keep", "shape": [1, 1], "datatype": "INT64", "parameters": {"binary_data_size": 8}},
        {"name": "seed_embeddings", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
    ]
    assert meta["outputs"] == [{"name": "scores", "parameters": {"binary_data": True}}]
    assert np.frombuffer(body[split:split + 24], "<i8").tolist() == [3, 4, 7]
    assert np.frombuffer(body[split + 24:], "<f4").tolist() == [0.5, -2.0]


def test_answers_decode_and_errors_name_the_model() -> None:
    wire = answer([("kept", "INT64", np.array([2, 0], "<i8").tobytes()), ("scores", "FP32", SCORES.tobytes())])
    head, _, body = wire.partition(b"\r\n\r\n")
    headers = {"inference-header-content-length": head.split(b"Inference-Header-Content-Length: ")[1].split(b"\r\n")[0].decode()}
    got = decode_infer(Response(200, headers, body), "m")
    assert [(n, d) for n, d, _ in got] == [("kept", "INT64"), ("scores", "FP32")]
    assert np.frombuffer(got[1][2], np.float32).tolist() == SCORES.tolist()
    with pytest.raises(InferenceServerException, match="triton m: item_ids holds 9, outside the catalogue"):
        decode_infer(Response(400, {}, b'{"error":"item_ids holds 9, outside the catalogue"}'), "m")
    with pytest.raises(InferenceServerException, match="triton m: <html>"):
        decode_infer(Response(500, {}, b"<html>"), "m")
    with pytest.raises(RuntimeError, match="m answered without binary tensors"):
        decode_infer(Response(200, {}, b'{"outputs":[{"name":"scores","datatype":"FP32","data":[1.0]}]}'), "m")
    with pytest.raises(RuntimeError, match="header accounts for"):
        decode_infer(Response(200, headers, body + b"extra"), "m")


async def test_scorer_over_http_sends_the_request_and_reuses_one_connection(fake) -> None:
    triton, port = fake
    scorer = TritonScorer("127.0.0.1:9", 1.0, http=HttpInference("127.0.0.1", port, 1.0))
    for _ in range(3):
        scores = await scorer.score("rank", 2, 7, np.array([4, 5, 6]), np.array([1, 2, -1]), 1_700_000_000)
        np.testing.assert_array_equal(scores, SCORES)
    path, meta, tensors = triton.requests[0]
    assert path == "/v2/models/rank_pipeline_v2/infer" and [t["name"] for t in meta["inputs"]] == [
        "user_id", "item_ids", "history", "timestamp"]
    assert tensors["item_ids"].tolist() == [[4, 5, 6]] and tensors["user_id"].tolist() == [[7]]
    assert triton.connections == 1
    await scorer.close()


async def test_a_pooled_connection_the_server_closed_is_replaced_once(fake) -> None:
    triton, port = fake
    first_drops = {0: answer([("scores", "FP32", SCORES.tobytes())]), 1: b"drop"}
    triton.reply = lambda i: first_drops.get(i, answer([("scores", "FP32", SCORES.tobytes())]))
    http = HttpInference("127.0.0.1", port, 1.0)
    for _ in range(2):  # the second call finds its pooled connection dropped and retries on a new one
        raw = await http.infer("m", [("x", np.array([[1]]))], ["scores"])
        assert np.frombuffer(raw[0][2], np.float32).tolist() == SCORES.tolist()
    assert len(triton.requests) == 3 and triton.connections == 2
    http.close()


async def test_down_hung_and_refusing_servers_raise_the_funnels_errors(fake) -> None:
    triton, port = fake
    with pytest.raises(BackendUnavailable, match="triton m"):
        await HttpInference("127.0.0.1", 9, 1.0).infer("m", [("x", np.array([[1]]))], ["scores"])
    triton.reply = lambda i: b"hang"
    with pytest.raises(BackendTimeout, match="no answer within 0.2 s"):
        await HttpInference("127.0.0.1", port, 0.2).infer("m", [("x", np.array([[1]]))], ["scores"])
    triton.reply = lambda i: b"HTTP/1.1 400 Bad Request\r\nContent-Length: 16\r\n\r\n{\"error\":\"nope\"}"
    with pytest.raises(InferenceServerException, match="triton m: nope"):
        await HttpInference("127.0.0.1", port, 1.0).infer("m", [("x", np.array([[1]]))], ["scores"])


async def test_readiness_over_http(fake) -> None:
    triton, port = fake
    triton.reply = lambda i: (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" if i == 0
                              else b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}")
    http = HttpInference("127.0.0.1", port, 1.0)
    scorer = TritonScorer("127.0.0.1:9", 1.0, http=http)
    assert await scorer.ready(["rank_pipeline_v1", "two_stage_p1_r1"]) == {"rank_pipeline_v1": True, "two_stage_p1_r1": False}
    assert not await HttpInference("127.0.0.1", 9, 1.0).ready("m")  # nothing listening
    await scorer.close()


async def test_an_abandoned_http_call_finishes_and_returns_its_connection(fake) -> None:
    triton, port = fake
    release = asyncio.Event()
    http = HttpInference("127.0.0.1", port, 5.0)
    scorer = TritonScorer("127.0.0.1:9", 5.0, http=http)
    original = http._send

    async def gated(request: bytes):
        await release.wait()
        return await original(request)

    http._send = gated
    call = asyncio.ensure_future(scorer.score("rank", 1, 1, np.array([1, 2, 3]), np.array([-1]), 0))
    await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert len(scorer._abandoned) == 1
    release.set()
    await asyncio.wait_for(scorer.close(), 5)
    assert not scorer._abandoned and len(triton.requests) == 1
