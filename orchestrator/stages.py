"""One request's record as it passes the funnel: stage allowances, latencies and degradations.

An awaiting stage runs under its allowance (`orchestrator.deadlines`); if it times out or fails, the
caller's fallback (the previous order) stands and the stage is named in `degraded` with its reason.
A degraded answer is logged once, with every skipped stage and its error (`orchestrator.logs`),
by whoever runs the funnel; `ThrottledLog` keeps background warnings (a board that does not answer)
to one line per interval.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from orchestrator.deadlines import DeadlinePlan
from orchestrator.metrics import FunnelMetrics
from orchestrator.schemas import Reason

log = logging.getLogger("cascade.orchestrator")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Degradation:
    """A stage that was skipped (the previous order stood), and why."""

    stage: str
    reason: Reason


def reason_for(err: BaseException) -> Reason:
    """Why a stage failed, as the response and the metrics name it."""
    if isinstance(err, (TimeoutError, asyncio.CancelledError)):  # cancelled: cut off by the stage's deadline
        return "timeout"
    if isinstance(err, ConnectionError):
        return "unavailable"
    return "error"


class ThrottledLog:
    """Log a warning per key at most every `interval_s`, saying how many were held back since."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def warn(self, key: tuple[str, str], message: str, now: float) -> None:
        last = self._last.get(key, float("-inf"))
        if now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        log.warning("%s%s", message, f" (and {held} more like it since {now - last:.1f}s ago)" if held else "")


class Degradations:
    """A request's skipped stages: `degraded`, what the answer says (stage and reason), and each one's
    error, which only the log line carries (`degraded_stages`)."""

    def __init__(self) -> None:
        self.degraded: list[Degradation] = []
        self.errors: list[str] = []

    def degrade(self, stage: str, err: BaseException) -> Reason:
        reason = reason_for(err)
        self.degraded.append(Degradation(stage, reason))
        self.errors.append(str(err) or type(err).__name__)
        return reason

    def degraded_stages(self) -> list[dict[str, str]]:
        return [{"stage": d.stage, "reason": d.reason, "error": e} for d, e in zip(self.degraded, self.errors)]


class RequestRun(Degradations):
    def __init__(self, plan: DeadlinePlan, started: float, metrics: FunnelMetrics, arm: str) -> None:
        super().__init__()
        self.plan, self.started, self.metrics, self.arm = plan, started, metrics, arm
        self.latency_ms: dict[str, float] = {}

    def degrade(self, stage: str, err: BaseException) -> Reason:
        reason = super().degrade(stage, err)
        self.metrics.count_degradation(stage, reason, self.arm)
        return reason

    def _finish(self, stage: str, started: float) -> None:
        seconds = time.perf_counter() - started
        self.latency_ms[stage] = round(seconds * 1e3, 3)
        self.metrics.observe_stage(stage, seconds, self.arm)

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        """A synchronous stage: it cannot be interrupted, so it is only timed."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._finish(stage, started)

    async def guarded(self, stages: tuple[str, ...], call: Callable[[], Awaitable[T]], fallback: T) -> T:
        """`await call()` within the allowance of `stages` (one stage, or several whose work one call
        does); on timeout or failure, `fallback`, and each of `stages` is degraded. Timed as
        `"+".join(stages)`."""
        started = time.perf_counter()
        allowance = self.plan.allowance(stages, started - self.started)
        try:
            if allowance <= 0:
                raise TimeoutError(f"no time left of the {self.plan.total_s * 1e3:g} ms request deadline")
            async with asyncio.timeout(allowance):
                return await call()
        except Exception as err:  # any failure degrades these stages, never the request
            for stage in stages:
                self.degrade(stage, err)
            return fallback
        finally:
            self._finish("+".join(stages), started)

    def count(self, stage: str, n_in: int, n_out: int) -> None:
        self.metrics.count_candidates(stage, n_in, n_out, self.arm)

    def total_ms(self, now: float) -> dict[str, float]:
        return {**self.latency_ms, "total": round((now - self.started) * 1e3, 3)}
