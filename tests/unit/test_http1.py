"""The HTTP/1.1 client's parsing, from bytes: status line, headers, body lengths, keep-alive."""
from __future__ import annotations

import asyncio

import pytest

from orchestrator.clients.http1 import HttpError, body_length, parse_head, read_response


def test_head_parsing() -> None:
    status, headers = parse_head(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 2\r\n\r\n")
    assert status == 503 and headers == {"retry-after": "1", "content-length": "2"} and body_length(headers) == 2
    assert body_length({}) is None
    for bad in (b"HTTP/2 200\r\n\r\n", b"ICY 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"):
        with pytest.raises(HttpError):
            parse_head(bad)
    with pytest.raises(HttpError, match="chunked"):
        body_length({"transfer-encoding": "chunked"})


async def test_read_response_from_bytes() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                     b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
    first, second = await read_response(reader), await read_response(reader)
    assert (first.status, first.body, first.keep_alive) == (200, b"hello", True)
    assert (second.body, second.keep_alive) == (b"{}", False)
    reader.feed_data(b"HTTP/1.1 404 Not Found\r\n\r\nbody to the close")
    reader.feed_eof()
    third = await read_response(reader)
    assert third.body == b"body to the close" and not third.keep_alive
