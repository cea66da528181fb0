"""The funnel for one request: recall -> exposure filter -> pre-rank -> rank -> rerank -> exposure write.

A stage that fails (Triton down or too slow, Redis unreachable) is skipped: the previous order
stands and the response names the stage in `degraded`.
"""
from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager

import numpy as np

from cascade.exposure import filter_exposed
from cascade.history import PAD_ITEM
from cascade.recall.merge import Candidates, merge_channels
from cascade.rerank.base import RerankInput, apply_chain
from cascade.rerank.registry import build_chain
from cascade.settings import Settings
from orchestrator.clients.exposure import ExposureStore
from orchestrator.clients.triton import TritonScorer
from orchestrator.resources import Resources
from orchestrator.schemas import Item, RecommendRequest, RecommendResponse

log = logging.getLogger("cascade.orchestrator")


class StageClock:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextmanager
    def stage(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = round((time.perf_counter() - t) * 1e3, 3)

    def total(self) -> dict[str, float]:
        return {**self.ms, "total": round((time.perf_counter() - self._start) * 1e3, 3)}


class Funnel:
    def __init__(self, settings: Settings, resources: Resources, scorer: TritonScorer, exposure: ExposureStore) -> None:
        self.settings, self.resources, self.scorer, self.exposure = settings, resources, scorer, exposure
        self.chain = build_chain(settings.rerank_chain)

    async def warm_up(self) -> None:
        """One small call per pipeline, so the first user request pays no lazy initialisation."""
        r = self.resources
        history = np.full(r.tables.config.history_len, PAD_ITEM, np.int64)
        for pipeline in ("prerank_pipeline", "rank_pipeline"):
            try:
                await self.scorer.score(pipeline, -1, r.popular_ids[:8], history, int(time.time()))
            except Exception as err:  # Triton not up yet: /readyz says so, requests degrade
                log.warning("warm-up of %s failed: %s", pipeline, err)

    def recall(self, user_id: int, history: np.ndarray | None, timestamp: int) -> Candidates:
        s, r = self.settings, self.resources
        limit = s.recall_ann_k + s.recall_popular_k
        popular = ("popular", r.popular_ids, r.popular_scores)
        if history is None:
            return merge_channels([popular], limit=limit)
        ann_ids, ann_scores = r.ann.search(user_id, history, timestamp, s.recall_ann_k)
        return merge_channels([("ann", ann_ids, ann_scores), popular], limit=limit, quotas={"popular": s.recall_popular_k})

    async def _score(self, pipeline: str, user_id: int, cands: Candidates, history: np.ndarray, timestamp: int,
                     keep: int, degraded: list[str]) -> Candidates:
        """Score through Triton and keep the best `keep`; on failure keep the current order."""
        stage = pipeline.removesuffix("_pipeline")
        try:
            scores = await self.scorer.score(pipeline, user_id, cands.item_ids, history, timestamp)
        except Exception as err:  # any Triton failure degrades this stage, never the request
            log.warning("%s skipped: %s", stage, err)
            degraded.append(stage)
            return cands.take(np.arange(min(keep, len(cands))))
        order = np.argsort(-scores, kind="stable")[:keep]
        scored = Candidates(cands.item_ids, cands.channels, scores.astype(np.float32), cands.channel_names)
        return scored.take(order)

    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        s, r = self.settings, self.resources
        clock, degraded = StageClock(), []
        user_id, k = request.user_id, request.k
        timestamp = request.context.timestamp if request.context and request.context.timestamp is not None else int(time.time())
        known_history = r.history_of(user_id)
        history = known_history if known_history is not None else np.full(r.tables.config.history_len, PAD_ITEM, np.int64)

        with clock.stage("recall"):
            cands = self.recall(user_id, known_history, timestamp)
        with clock.stage("exposure_filter"):
            try:
                exposed = await self.exposure.exposed(user_id)
                cands = cands.take(filter_exposed(cands.item_ids, exposed, min_keep=k))
            except Exception as err:  # Redis down: serve unfiltered
                log.warning("exposure filter skipped: %s", err)
                degraded.append("exposure_filter")
        with clock.stage("prerank"):
            cands = await self._score("prerank_pipeline", user_id, cands, history, timestamp, max(s.prerank_keep, k), degraded)
        with clock.stage("rank"):
            cands = await self._score("rank_pipeline", user_id, cands, history, timestamp, max(s.rank_keep, k), degraded)
        with clock.stage("rerank"):
            batch = RerankInput(
                cands.item_ids, cands.scores, r.tables.item_category[cands.item_ids], r.item_embeddings[cands.item_ids]
            )
            final = cands.take(apply_chain(self.chain, batch, k))
        with clock.stage("exposure_write"):
            try:
                await self.exposure.record(user_id, final.item_ids)
            except Exception as err:
                log.warning("exposure write skipped: %s", err)
                degraded.append("exposure_write")
        items = [
            Item(item_id=int(i), score=float(sc), category=int(r.tables.item_category[i]), channel=final.channel_names[c])
            for i, sc, c in zip(final.item_ids, final.scores, final.channels)
        ]
        return RecommendResponse(
            request_id=uuid.uuid4().hex, user_id=user_id, cold_start=known_history is None, items=items,
            model_versions=dict(r.manifest.model_versions), latency_ms=clock.total(), degraded=degraded,
        )
