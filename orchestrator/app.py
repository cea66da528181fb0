"""App factory and lifespan: open Triton, Redis and the recall index on start, close them on stop."""
from __future__ import annotations

import asyncio
import gc
import logging
import os
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI
from prometheus_client import multiprocess

from cascade.settings import Settings, load_settings
from orchestrator.admission import Admission, AdmissionGate
from orchestrator.clients.audience import LiveEmbeddings, Places
from orchestrator.clients.exposure import ExposureStore
from orchestrator.clients.feedback import FeedbackLimits, FeedbackStore
from orchestrator.clients.kserve_http import HttpInference
from orchestrator.clients.triton import TritonScorer
from orchestrator.clients.operator_board import RedisOperatorBoard
from orchestrator.clients.ratelimit import RateLimiter
from orchestrator.errors import RETRY_AFTER_S, install_error_handlers
from orchestrator.logs import AdminAudit, configure_logging
from orchestrator.metrics import FunnelMetrics, RequestMetrics, multiprocess_mode
from orchestrator.live_embeddings import refresh_forever
from orchestrator.lookalike import LookalikeService
from orchestrator.service import FunnelService
from orchestrator.resources import Audience, Resources
from orchestrator.routes import admin, feedback, health, lookalike, metrics, recommend

log = logging.getLogger("cascade.orchestrator")


async def publish_metrics(metrics: FunnelMetrics, door: Admission, every_s: float = 1.0) -> None:
    """Forever, in multiprocess mode: this process's series where other processes' /metrics read them."""
    while True:
        metrics.publish(door)
        await asyncio.sleep(every_s)


async def open_lookalike(
    settings: Settings, resources: Resources, scorer: TritonScorer, exposure: ExposureStore, live: LiveEmbeddings,
    funnel: FunnelService, metrics: FunnelMetrics,
) -> LookalikeService | None:
    """The look-alike service over the export's users (None without them), Redis GEO filled from the
    export's locations once per export (a failure is logged: requests with `near` then fall back to
    the export's locations)."""
    audience = Audience.load(settings, resources.manifest)
    if audience is None:
        return None
    places = Places(exposure.redis, exposure.batches)
    try:
        added = await places.fill(audience.table, audience.version)
        if added:
            log.info("look-alike: %d users' locations written to Redis GEO", added)
    except Exception as err:  # noqa: BLE001 - Redis down at start: `near` degrades to the export's locations
        log.warning("look-alike: locations not written to Redis GEO: %s", err)
    version = resources.manifest.model_versions.get("lookalike", 1)
    pool = np.arange(min(settings.lookalike_pool, audience.table.n_users), dtype=np.int64)
    try:  # a full-size call, so the first request pays no lazy initialisation in the model's stub
        await scorer.score_lookalike(version, pool[:5], audience.table.side.embedding[pool[:5]], pool)
    except Exception as err:  # noqa: BLE001 - Triton not up yet: /readyz says so, requests degrade
        log.warning("warm-up of the look-alike scorer failed: %s", err)
    return LookalikeService(settings, audience.table, audience.likers, audience.index, places, live, scorer, version,
                            funnel.runner.contexts, metrics)


def freeze_startup_objects() -> None:
    """Move everything start-up made out of the garbage collector's reach (`gc.freeze`). A full
    collection walks every tracked object, and the libraries this process imports (fastapi, faiss,
    onnxruntime, redis, grpc) and its artefacts leave some 100k of them: one took 40-50 ms here,
    and it came in the middle of a request (measured: look-alike requests at concurrency 1 with
    p50 13 ms and p99 54 ms, the slow ones all inside one await). Frozen, they are never walked
    again; what requests allocate is collected as before."""
    gc.collect()
    gc.freeze()


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
        live = LiveEmbeddings(exposure.redis, settings.lookalike_embedding_ttl_s)
        app.state.live_embeddings = live
        app.state.lookalike = await open_lookalike(settings, resources, scorer, exposure, live, app.state.funnel, app.state.metrics)
        app.state.metrics.set_active_versions(app.state.funnel.versions.active)
        freeze_startup_objects()
        tasks = [asyncio.create_task(app.state.funnel.follow_shared())]
        if app.state.lookalike is not None:
            tasks.append(asyncio.create_task(refresh_forever(
                live, exposure, resources, settings.lookalike_refresh_s, settings.lookalike_refresh_batch,
            )))
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
            app.state.funnel = app.state.feedback = app.state.lookalike = app.state.live_embeddings = None
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
    app.add_middleware(  # the look-alike route's own door
        AdmissionGate, door=Admission(settings.lookalike_max_in_flight, settings.admission_wait_ms / 1e3),
        metrics=app.state.metrics, path="/v1/lookalike", retry_after_s=RETRY_AFTER_S, shed=app.state.metrics.count_lookalike_shed,
    )
    app.include_router(recommend.router)
    app.include_router(feedback.router)
    app.include_router(lookalike.router)
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
