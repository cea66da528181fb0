"""Admission control at the door: a bounded number of requests in flight, per route that has a door
(POST /v1/recommend, POST /v1/lookalike: each its own).

Beyond capacity, answering every request late (stages skipped for want of CPU) helps nobody. So at
most `limit` requests run the funnel at once; the next ones wait for a slot in arrival order, at most
`wait_s` (which counts against their deadline), and are then shed: 503 with Retry-After, answered by
`AdmissionGate` before any framework layer. Below capacity nobody waits.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.metrics import ARRIVED, FunnelMetrics


class Admission:
    def __init__(self, limit: int, wait_s: float) -> None:
        if limit < 1:
            raise ValueError(f"admission limit must be >= 1, got {limit}")
        self.limit, self.wait_s = limit, wait_s
        self.in_flight = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(not slot.done() for slot in self._waiting)

    async def enter(self) -> bool:
        """Take a slot (True), or give up after `wait_s` without one (False: shed the request)."""
        if self.in_flight < self.limit and not self._waiting:
            self.in_flight += 1
            return True
        if self.wait_s <= 0:
            return False
        slot = asyncio.get_running_loop().create_future()
        self._waiting.append(slot)
        try:
            async with asyncio.timeout(self.wait_s):
                await slot
            return True
        except BaseException as err:  # the wait ran out, or the request was cancelled (its client left)
            if slot.done() and not slot.cancelled():  # the slot was handed over just then: pass it on
                self.leave()
            elif slot in self._waiting:
                self._waiting.remove(slot)
            if isinstance(err, TimeoutError):
                return False
            raise

    def leave(self) -> None:
        """Give the slot back: to the longest waiter still waiting, else to the pool."""
        while self._waiting:
            slot = self._waiting.popleft()
            if not slot.done():  # a waiter cancelled a moment ago is done already, and skipped
                slot.set_result(None)  # the slot moves to that waiter: in_flight stays
                return
        self.in_flight -= 1


class AdmissionGate:
    """Pure ASGI middleware, outermost: the door for one route (`path`); `shed` counts a request it
    turned away (default: `FunnelMetrics.count_shed`, the recommend route's).

    Shedding happens here, before any framework layer, so an overloaded server spends as little as
    possible on the requests it turns away (a closed-loop client sends the next one at once). The
    arrival time is put in the scope (`ARRIVED`): the request's deadline counts from there.
    """

    def __init__(
        self, app: ASGIApp, door: Admission, metrics: FunnelMetrics, path: str, retry_after_s: int = 1,
        shed: Callable[[], None] | None = None,
    ) -> None:
        self.app, self.door, self.metrics, self.path = app, door, metrics, path
        self.shed = shed if shed is not None else metrics.count_shed
        body = orjson.dumps({"error": "service unavailable: overloaded, try again shortly", "fields": []})
        self._shed_start: Message = {
            "type": "http.response.start", "status": 503,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"retry-after", str(retry_after_s).encode())],
        }
        self._shed_body: Message = {"type": "http.response.body", "body": body}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        arrived = scope[ARRIVED] = time.perf_counter()
        if not await self.door.enter():
            self.shed()
            await send(self._shed_start)
            await send(self._shed_body)
            self.metrics.observe_request(self.path, 503, time.perf_counter() - arrived)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.door.leave()
