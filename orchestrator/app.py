"""App factory and lifespan: open Triton, Redis and the recall index on start, close them on stop."""
from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import multiprocess

from cascade.settings import Settings, load_settings
from orchestrator.admission import Admission, AdmissionGate
from orchestrator.clients.exposure import ExposureStore
from orchestrator.clients.feedback import FeedbackLimits, FeedbackStore
from orchestrator.clients.kserve_http import HttpInference
from orchestrator.clients.triton import TritonScorer
from orchestrator.clients.operator_board import RedisOperatorBoard
from orchestrator.clients.ratelimit import RateLimiter
from orchestrator.errors import RETRY_AFTER_S, install_error_handlers
from orchestrator.logs import AdminAudit, configure_logging
from orchestrator.metrics import FunnelMetrics, RequestMetrics, multiprocess_mode
from orchestrator.service import FunnelService
from orchestrator.resources import Resources
from orchestrator.routes import admin, feedback, health, metrics, recommend


async def publish_metrics(metrics: FunnelMetrics, door: Admission, every_s: float = 1.0) -> None:
    """Forever, in multiprocess mode: this process's series where other processes' /metrics read them."""
    while True:
        metrics.publish(door)
        await asyncio.sleep(every_s)


def build_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        resources = Resources.load(settings)
        http = None
        if settings.triton_infer_protocol == "http":
            http = HttpInference(settings.triton_host, settings.triton_http_port, settings.triton_timeout_s)
        scorer = TritonScorer(
            settings.triton_grpc_url, settings.triton_timeout_s, settings.triton_reconnect_backoff_ms, http,
        )
        exposure = ExposureStore(
            settings.effective_redis_url, settings.exposure_ttl_s, settings.exposure_max_items,
            settings.long_exposure_ttl_s, settings.history_len, settings.sample_log_max_len, settings.sample_log_max_bytes,
            settings.redis_cluster,
        )
        app.state.feedback = FeedbackStore(exposure.redis, FeedbackLimits(
            settings.feedback_dedup_ttl_s, settings.long_exposure_ttl_s, settings.long_exposure_max_items,
            settings.live_sequence_ttl_s, settings.history_len, settings.popular_decay_tau_s, settings.label_ttl_s,
        ))
        app.state.feedback_limiter = RateLimiter(exposure.redis, settings.feedback_rate_per_s, settings.feedback_burst)
        app.state.funnel = FunnelService(settings, resources, scorer, exposure, app.state.metrics, RedisOperatorBoard(exposure.redis))
        await app.state.funnel.warm_up()
        app.state.metrics.set_active_versions(app.state.funnel.versions.active)
        tasks = [asyncio.create_task(app.state.funnel.follow_shared())]
        if multiprocess_mode():
            tasks.append(asyncio.create_task(publish_metrics(app.state.metrics, app.state.admission)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            if multiprocess_mode():
                app.state.metrics.tally.flush()  # its last counts stay in the totals
                multiprocess.mark_process_dead(os.getpid())  # its live gauges leave /metrics
            app.state.funnel = app.state.feedback = None
            await scorer.close()
            await exposure.close()
            await resources.channels.close()

    app = FastAPI(title="Cascade", version="0.1.0", lifespan=lifespan)
    app.state.metrics = FunnelMetrics()  # a registry per app: apps built side by side never share series
    app.state.admission = Admission(settings.max_in_flight, settings.admission_wait_ms / 1e3)
    app.state.metrics.watch_admission(app.state.admission)
    install_error_handlers(app, settings.max_body_bytes, {
        "/v1/feedback": settings.feedback_max_body_bytes, "/admin/experiments": settings.admin_max_body_bytes,
    })
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)  # counts the error handlers' answers too
    app.add_middleware(AdminAudit)  # every operator call, refused ones too, as a log line
    app.add_middleware(  # outermost: sheds before any other layer runs (it counts its own answers)
        AdmissionGate, door=app.state.admission, metrics=app.state.metrics, path="/v1/recommend", retry_after_s=RETRY_AFTER_S,
    )
    app.include_router(recommend.router)
    app.include_router(feedback.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(admin.router)
    return app


def create_app() -> FastAPI:
    """For `uvicorn --factory orchestrator.app:create_app`: settings from CASCADE_* variables, JSON
    log lines (`orchestrator.logs`) to stdout or the rotated CASCADE_LOG_FILE."""
    settings = load_settings()
    log_file = settings.log_file
    if log_file is not None and settings.workers > 1:  # one writer per rotated file: <file>.<pid> per process
        log_file = log_file.with_name(f"{log_file.name}.{os.getpid()}")
    configure_logging(settings.log_level, log_file, settings.log_max_bytes, settings.log_backups)
    return build_app(settings)
