"""A minimal HTTP/1.1 keep-alive client on `asyncio.open_connection`: the orchestrator's Triton
inference calls (`orchestrator.clients.kserve_http`) and the load generator (`perf.rawhttp`) use it.

One `Connection` carries one request at a time. A status line, headers and a `Content-Length` body
(or a body up to the close when there is no length) are understood; a chunked answer is refused
rather than misread. The parsing functions are pure so tests can feed them bytes.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass


class HttpError(Exception):
    """The server's bytes are not an HTTP/1.1 answer this client understands."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and headers (names lower-cased) of a response head ending in CRLF CRLF."""
    lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"bad status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(f"bad header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def body_length(headers: dict[str, str]) -> int | None:
    """Bytes of body to read; None means up to the close of the connection."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise HttpError("chunked answers are not supported")
    if "content-length" not in headers:
        return None
    try:
        return int(headers["content-length"])
    except ValueError:
        raise HttpError(f"bad Content-Length {headers['content-length']!r}") from None


async def read_response(reader: asyncio.StreamReader) -> Response:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as err:
        raise ConnectionResetError("connection closed before an answer") from err
    status, headers = parse_head(head)
    length = body_length(headers)
    body = await reader.read() if length is None else await reader.readexactly(length)
    if length is None:
        headers["connection"] = "close"
    return Response(status, headers, body)


class Connection:
    """One keep-alive connection; (re)opened on first use and after the server closes it or a request fails."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> None:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)

    async def request(self, data: bytes) -> Response:
        await self.open()
        assert self._streams is not None
        reader, writer = self._streams
        try:
            writer.write(data)
            response = await read_response(reader)
        except BaseException:  # timeouts and cancellation too: the answer may still arrive on this socket
            self.close()
            raise
        if not response.keep_alive:
            self.close()
        return response

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None
