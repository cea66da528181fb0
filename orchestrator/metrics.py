"""Prometheus metrics of the orchestrator, on a registry of the app's own (GET /metrics).

The funnel calls the thin `observe_*`/`count_*` hooks; the metric objects and their names stay here.
Every per-request series carries the user's experiment arm (`arm`, "none" without experiments), so
each arm's latencies, candidate counts, filter rates, Triton errors and degradations compare directly.

With more than one orchestrator process (CASCADE_WORKERS > 1) the stack sets PROMETHEUS_MULTIPROC_DIR:
every process writes its series there and /metrics, whichever process answers it, adds up all of
them (prometheus_client's multiprocess mode). The door's gauges are then sampled every second
(`publish`, with the request path's `Tally`) instead of read at scrape time, and the active versions carry each live
process's `pid`.
"""
from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Mapping
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.asgi import StatusNoted

if TYPE_CHECKING:
    from orchestrator.admission import Admission

ARRIVED = "cascade.arrived"  # scope key: time.perf_counter() when the door saw the request (orchestrator.admission)

# Seconds, resolving the budget table's milliseconds (2, 5, 8, 12, 50 ms) and what overruns them.
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
    0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
)
CANDIDATE_BUCKETS = (0, 1, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000)
RATIO_BUCKETS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_mode() -> bool:
    """Whether this process writes its series to the directory every orchestrator process shares."""
    return MULTIPROCESS_ENV in os.environ


class Children:
    """A labelled metric's children, each looked up once: prometheus_client's `labels()` validates and
    takes a lock on every call, and a request makes some thirty of them."""

    def __init__(self, metric: Counter | Histogram) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Counter | Histogram] = {}

    def __call__(self, *values: str) -> Counter | Histogram:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class Tally:
    """The funnel's per-request counts in plain dicts, added to their Prometheus children in one go
    (`flush`): at scrape time, and every second in multiprocess mode (`publish_metrics`).

    In multiprocess mode every `inc`/`observe` of prometheus_client takes a lock, checks the pid and
    writes a memory-mapped file: 3-7 us each, some twenty per request, 5 % of the event loop's time.
    Here an observation costs a dict update; a histogram's pending observations go in as one
    addition per touched bucket plus one to the sum (`test_a_flushed_tally_reads_as_direct_calls`
    holds this to what `observe` itself writes)."""

    def __init__(self) -> None:
        self._counts: dict[Counter, float] = {}
        self._histograms: dict[Histogram, tuple[list[float], list[int]]] = {}  # child -> ([sum], per bucket)

    def inc(self, child: Counter, amount: float = 1.0) -> None:
        self._counts[child] = self._counts.get(child, 0.0) + amount

    def observe(self, child: Histogram, amount: float) -> None:
        pending = self._histograms.get(child)
        if pending is None:
            pending = self._histograms[child] = ([0.0], [0] * len(child._upper_bounds))
        pending[0][0] += amount
        pending[1][bisect_left(child._upper_bounds, amount)] += 1  # the first bound >= amount, as observe

    def flush(self) -> None:
        counts, self._counts = self._counts, {}
        histograms, self._histograms = self._histograms, {}
        for child, amount in counts.items():
            child.inc(amount)
        for child, (total, buckets) in histograms.items():
            child._sum.inc(total[0])
            for i, n in enumerate(buckets):
                if n:
                    child._buckets[i].inc(n)


class FunnelMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.stage_seconds = Histogram(
            "cascade_stage_duration_seconds", "Time spent in each funnel stage, skipped stages included",
            ["stage", "arm"], buckets=LATENCY_BUCKETS_S, registry=r,
        )
        self.stage_candidates = Histogram(
            "cascade_stage_candidates", "Candidates going into (direction=in) and out of each funnel stage",
            ["stage", "direction", "arm"], buckets=CANDIDATE_BUCKETS, registry=r,
        )
        self.recall_candidates = Counter(
            "cascade_recall_candidates", "Recalled candidates, by the channel that brought them", ["channel", "arm"], registry=r,
        )
        self.exposure_checked = Counter(
            "cascade_exposure_checked", "Candidates checked against the user's exposure", ["arm"], registry=r,
        )
        self.exposure_filtered = Counter(
            "cascade_exposure_filtered", "Candidates dropped because the user was already shown them", ["arm"], registry=r,
        )
        self.exposure_ratio = Histogram(
            "cascade_exposure_filter_ratio", "Share of a request's candidates the exposure filter dropped",
            ["arm"], buckets=RATIO_BUCKETS, registry=r,
        )
        self.triton_seconds = Histogram(
            "cascade_triton_request_duration_seconds", "Triton gRPC inference calls, failed ones included",
            ["pipeline", "version", "arm"], buckets=LATENCY_BUCKETS_S, registry=r,
        )
        self.triton_errors = Counter(
            "cascade_triton_errors", "Triton calls that failed, by reason", ["pipeline", "version", "reason", "arm"], registry=r,
        )
        self.degradations = Counter(
            "cascade_degradations", "Stages skipped or cut short, by reason", ["stage", "reason", "arm"], registry=r,
        )
        self.requests = Counter(
            "cascade_http_requests", "HTTP requests answered, by route and status code", ["path", "status"], registry=r,
        )
        self.arm_requests = Counter(
            "cascade_requests_by_arm", "Recommend requests, by experiment and arm (none without experiments)",
            ["experiment", "arm"], registry=r,
        )
        self.feedback_events = Counter(
            "cascade_feedback_events", "Feedback events received, by type and outcome (accepted, duplicate)",
            ["type", "outcome"], registry=r,
        )
        self.recall_reloads = Counter(
            "cascade_recall_config_reloads", "Reloads of the recall channel file, by outcome (ok, rejected)",
            ["outcome"], registry=r,
        )
        self.version_switches = Counter(
            "cascade_model_version_switches", "Requests to move traffic to a scorer version, by outcome (ok, refused)",
            ["scorer", "outcome"], registry=r,
        )
        self.experiment_changes = Counter(
            "cascade_experiment_changes", "Requests to change the experiments in force (PUT /admin/experiments), "
            "by outcome (ok, refused)", ["outcome"], registry=r,
        )
        self.active_version = Gauge(
            "cascade_model_active_version", "The scorer version new requests call (arms may pin others)", ["scorer"],
            registry=r, multiprocess_mode="liveall",
        )
        self.shed = Counter(
            "cascade_shed_requests", "Recommend requests shed at the door (503 with Retry-After): every slot stayed busy",
            registry=r,
        )
        self.in_flight = Gauge(
            "cascade_in_flight_requests", "Recommend requests running the funnel now", registry=r, multiprocess_mode="livesum",
        )
        self.waiting = Gauge(
            "cascade_waiting_requests", "Recommend requests waiting at the door for a slot", registry=r,
            multiprocess_mode="livesum",
        )
        self.request_seconds = Histogram(
            "cascade_http_request_duration_seconds", "HTTP request latency, by route", ["path"],
            buckets=LATENCY_BUCKETS_S, registry=r,
        )
        self.lookalike_answers = Counter(
            "cascade_lookalike_answers", "Look-alike answers, by whose similarity they carry (model, embedding: the "
            "scorer was skipped, rules: cold start)", ["scored_by"], registry=r,
        )
        self.lookalike_stage_seconds = Histogram(
            "cascade_lookalike_stage_duration_seconds", "Time in each look-alike stage (total: the whole request)",
            ["stage"], buckets=LATENCY_BUCKETS_S, registry=r,
        )
        self.lookalike_shed = Counter(
            "cascade_lookalike_shed_requests", "Look-alike requests shed at their door (503 with Retry-After)", registry=r,
        )
        self.lookalike_degradations = Counter(
            "cascade_lookalike_degradations", "Look-alike stages that fell back, by reason", ["stage", "reason"], registry=r,
        )
        # The children the request path touches, looked up once each.
        self._stage, self._candidates = Children(self.stage_seconds), Children(self.stage_candidates)
        self._recall, self._triton = Children(self.recall_candidates), Children(self.triton_seconds)
        self._checked, self._filtered = Children(self.exposure_checked), Children(self.exposure_filtered)
        self._ratio, self._arm = Children(self.exposure_ratio), Children(self.arm_requests)
        self._requests, self._request_seconds = Children(self.requests), Children(self.request_seconds)
        self._triton_errors, self._degradations = Children(self.triton_errors), Children(self.degradations)
        self._lookalike, self._lookalike_stage = Children(self.lookalike_answers), Children(self.lookalike_stage_seconds)
        self.tally = Tally()

    # --- hooks the funnel calls (into the tally; see `Tally`) ---------------------------
    def observe_stage(self, stage: str, seconds: float, arm: str) -> None:
        self.tally.observe(self._stage(stage, arm), seconds)

    def count_candidates(self, stage: str, n_in: int, n_out: int, arm: str) -> None:
        self.tally.observe(self._candidates(stage, "in", arm), n_in)
        self.tally.observe(self._candidates(stage, "out", arm), n_out)

    def count_recall(self, per_channel: Mapping[str, int], arm: str) -> None:
        for channel, n in per_channel.items():
            self.tally.inc(self._recall(channel, arm), n)

    def count_exposure_filter(self, n_in: int, n_kept: int, arm: str) -> None:
        filtered = max(0, n_in - n_kept)
        self.tally.inc(self._checked(arm), n_in)
        self.tally.inc(self._filtered(arm), filtered)
        self.tally.observe(self._ratio(arm), filtered / n_in if n_in else 0.0)

    def observe_triton(self, pipeline: str, version: int | str, arm: str, seconds: float, failure: str | None) -> None:
        self.tally.observe(self._triton(pipeline, str(version), arm), seconds)
        if failure is not None:
            self._triton_errors(pipeline, str(version), failure, arm).inc()

    def count_degradation(self, stage: str, reason: str, arm: str) -> None:
        self._degradations(stage, reason, arm).inc()

    def count_lookalike(self, scored_by: str, latency_ms: Mapping[str, float], degraded: list[tuple[str, str]]) -> None:
        """One look-alike answer: whose similarity it carries, each stage's time, what fell back."""
        self.tally.inc(self._lookalike(scored_by))
        for stage, ms in latency_ms.items():
            self.tally.observe(self._lookalike_stage(stage), ms / 1e3)
        for stage, reason in degraded:
            self.lookalike_degradations.labels(stage, reason).inc()

    def count_arm(self, experiment: str, arm: str) -> None:
        self.tally.inc(self._arm(experiment, arm))

    def count_shed(self) -> None:
        self.shed.inc()

    def count_lookalike_shed(self) -> None:
        self.lookalike_shed.inc()

    def watch_admission(self, admission: "Admission") -> None:
        """The door's in-flight and waiting counts, read at scrape time (one process; with several,
        `publish` writes them)."""
        if not multiprocess_mode():
            self.in_flight.set_function(lambda: admission.in_flight)
            self.waiting.set_function(lambda: admission.waiting)

    def publish(self, admission: "Admission") -> None:
        """Multiprocess mode, every second: the tally into this process's files, and the door's
        counts into the gauges other processes' /metrics read."""
        self.tally.flush()
        self.in_flight.set(admission.in_flight)
        self.waiting.set(admission.waiting)

    # --- hooks of the other endpoints ----------------------------------------------------
    def count_feedback(self, counts: Mapping[tuple[str, str], int]) -> None:
        """(type, outcome) -> events."""
        for (kind, outcome), n in counts.items():
            self.feedback_events.labels(kind, outcome).inc(n)

    def count_recall_reload(self, ok: bool) -> None:
        self.recall_reloads.labels("ok" if ok else "rejected").inc()

    def count_version_switch(self, scorer: str, ok: bool) -> None:
        self.version_switches.labels(scorer, "ok" if ok else "refused").inc()

    def count_experiments_change(self, ok: bool) -> None:
        self.experiment_changes.labels("ok" if ok else "refused").inc()

    def set_active_versions(self, active: Mapping[str, int]) -> None:
        for scorer, version in active.items():
            self.active_version.labels(scorer).set(version)

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        self._requests(path, str(status)).inc()
        self._request_seconds(path).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """This app's series; in multiprocess mode, every orchestrator process's, added up (the
        others' as of their last `publish`, at most a second old)."""
        self.tally.flush()
        if not multiprocess_mode():
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        every_process = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_process)
        return generate_latest(every_process), CONTENT_TYPE_LATEST


class RequestMetrics:
    """ASGI middleware: counts every HTTP answer by route template (not raw path) and status code."""

    def __init__(self, app: ASGIApp, metrics: FunnelMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = scope.get(ARRIVED) or time.perf_counter()  # from arrival: a wait at the door counts
        noted = StatusNoted(send)
        try:
            await self.app(scope, receive, noted)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(path, noted.status or 500, time.perf_counter() - started)
