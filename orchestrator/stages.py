"""One request's pass through the funnel: stage deadlines, latencies and degradations, in one place.

An awaiting stage runs under its deadline (`asyncio.timeout`); if it times out or fails, the
caller's fallback (the previous order) stands and the stage is named in `degraded` with its reason.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from orchestrator.deadlines import Deadline
from orchestrator.metrics import FunnelMetrics
from orchestrator.schemas import Degradation, Reason

log = logging.getLogger("cascade.orchestrator")
T = TypeVar("T")


def reason_for(err: BaseException) -> Reason:
    """Why a stage failed, as the response and the metrics name it."""
    if isinstance(err, (TimeoutError, asyncio.CancelledError)):  # cancelled: cut off by the stage's deadline
        return "timeout"
    if isinstance(err, ConnectionError):
        return "unavailable"
    return "error"


class RequestRun:
    def __init__(self, deadline: Deadline, metrics: FunnelMetrics, arm: str = "none") -> None:
        self.deadline, self.metrics, self.arm = deadline, metrics, arm  # arm: the metrics' label
        self.latency_ms: dict[str, float] = {}
        self.degraded: list[Degradation] = []

    def degrade(self, stage: str, err: BaseException) -> None:
        reason = reason_for(err)
        log.warning("%s degraded (%s): %s", stage, reason, str(err) or type(err).__name__)
        self.degraded.append(Degradation(stage=stage, reason=reason))
        self.metrics.count_degradation(stage, reason, self.arm)

    def _finish(self, stage: str, started: float) -> None:
        seconds = time.perf_counter() - started
        self.latency_ms[stage] = round(seconds * 1e3, 3)
        self.metrics.observe_stage(stage, seconds, self.arm)

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        """A synchronous stage: it cannot be interrupted, so it is timed and counted against the plan."""
        started = time.perf_counter()
        self.deadline.begin(stage, started)
        try:
            yield
        finally:
            self._finish(stage, started)

    async def guarded(self, stage: str, call: Callable[[], Awaitable[T]], fallback: T) -> T:
        """`await call()` within the stage's allowance; on timeout or failure, `fallback`."""
        started = time.perf_counter()
        allowance = self.deadline.begin(stage, started)
        try:
            if allowance <= 0:
                raise TimeoutError(f"no time left of the {self.deadline.total_s * 1e3:g} ms request deadline")
            async with asyncio.timeout(allowance):
                return await call()
        except Exception as err:  # any failure degrades this stage, never the request
            self.degrade(stage, err)
            return fallback
        finally:
            self._finish(stage, started)

    def count(self, stage: str, n_in: int, n_out: int) -> None:
        self.metrics.count_candidates(stage, n_in, n_out, self.arm)

    def total_ms(self, now: float) -> dict[str, float]:
        return {**self.latency_ms, "total": round((now - self.deadline.started) * 1e3, 3)}
