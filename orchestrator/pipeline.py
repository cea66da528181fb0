"""The funnel for one request: recall -> exposure filter -> pre-rank -> rank -> rerank -> exposure write.

Every stage has a deadline (`orchestrator.deadlines`). A stage that fails or runs out of time
(Triton down or too slow, Redis unreachable) is skipped: the previous order stands and the
response names the stage and the reason in `degraded`. With Triton down the answer is recall's
order; with Redis down it is unfiltered and not recorded.

Scorers are called through pinned pipelines (`rank_pipeline_v2`), at the versions
`orchestrator.versions` has active, so the response names the versions that scored it.

Experiments (CASCADE_EXPERIMENTS): the first experiment is in force. Each user is hashed to an arm
(`cascade.experiments`), whose rerank chain (built at start) replaces the default one and whose pinned
model versions replace the active ones; the response names the experiment and arm.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid

import numpy as np

from cascade.experiments import Arm, parse_experiments
from cascade.exposure import filter_exposed
from cascade.features import assemble_requests
from cascade.history import PAD_ITEM, merge_live_history
from cascade.recall.merge import Candidates
from cascade.rerank.base import RerankInput, apply_chain
from cascade.rerank.registry import build_chain
from cascade.samples import ServedSample, encode_sample
from cascade.settings import Settings
from cascade.triton.layout import pipeline_name
from orchestrator.clients.exposure import ExposureStore, UserState
from orchestrator.clients.triton import TritonScorer
from orchestrator.deadlines import Deadline
from orchestrator.metrics import FunnelMetrics
from orchestrator.resources import Resources
from orchestrator.schemas import ExperimentArm, Item, RecommendRequest, RecommendResponse
from orchestrator.stages import RequestRun, reason_for
from orchestrator.versions import ScorerVersions

log = logging.getLogger("cascade.orchestrator")


class Funnel:
    def __init__(
        self, settings: Settings, resources: Resources, scorer: TritonScorer, exposure: ExposureStore,
        metrics: FunnelMetrics | None = None,
    ) -> None:
        self.settings, self.resources, self.scorer, self.exposure = settings, resources, scorer, exposure
        self.metrics = metrics if metrics is not None else FunnelMetrics()
        self.versions = ScorerVersions(resources.manifest.model_versions)
        self.chain = build_chain(settings.rerank_chain)
        experiments = parse_experiments(settings.experiments)
        self.experiment = experiments[0] if experiments else None
        self.arm_chains = {
            arm.name: build_chain(arm.rerank_chain) if arm.rerank_chain is not None else self.chain
            for arm in (self.experiment.arms if self.experiment else ())
        }

    def pinned_versions(self, scorer: str) -> list[int]:
        """The versions of `scorer` that experiment arms call instead of the active one."""
        arms = self.experiment.arms if self.experiment is not None else ()
        return sorted({arm.model_versions[scorer] for arm in arms if arm.model_versions and scorer in arm.model_versions})

    def arm_of(self, user_id: int) -> Arm | None:
        return self.experiment.assign(user_id) if self.experiment is not None else None

    async def warm_up(self) -> None:
        """Read the servable scorer versions, then one full-size request's worth of work (ANN recall,
        then both pipelines at the sizes they will see), so the first user request pays no lazy
        initialisation or allocation."""
        await self.versions.discover(self.scorer)
        r, s = self.resources, self.settings
        now = int(time.time())
        history = r.history_of(0)
        try:
            cands = (await self.recall(0, history, now)).item_ids
        except Exception as err:  # requests fall back to the popular channel; say so once here
            log.warning("warm-up of recall failed: %s", err)
            cands = r.popular_ids
        history = history if history is not None else np.full(r.tables.config.history_len, PAD_ITEM, np.int64)
        for scorer, n in (("prerank", len(cands)), ("rank", s.prerank_keep)):
            pipeline = pipeline_name(scorer, self.versions.active[scorer])
            try:
                await self.scorer.score(pipeline, 0, cands[:n], history, now)
            except Exception as err:  # Triton not up yet: /readyz says so, requests degrade
                log.warning("warm-up of %s failed: %s", pipeline, err)

    async def recall(self, user_id: int, history: np.ndarray | None, timestamp: int) -> Candidates:
        """The channels of CASCADE_RECALL_CONFIG, run concurrently and merged by priority with their quotas
        (`orchestrator.recall`); `history` None: a cold-start user, who gets the cold-start channels and
        exploration slots."""
        return await self.resources.channels.recall(user_id, history, timestamp)

    async def _triton(self, scorer: str, version: int, user_id: int, cands: Candidates, history: np.ndarray,
                      timestamp: int, arm: str) -> np.ndarray:
        started, failure = time.perf_counter(), None
        try:
            return await self.scorer.score(pipeline_name(scorer, version), user_id, cands.item_ids, history, timestamp)
        except (Exception, asyncio.CancelledError) as err:
            failure = reason_for(err)
            raise
        finally:
            self.metrics.observe_triton(pipeline_name(scorer), version, arm, time.perf_counter() - started, failure)

    async def _score(self, run: RequestRun, scorer: str, version: int, user_id: int, cands: Candidates,
                     history: np.ndarray, timestamp: int, keep: int) -> tuple[Candidates, bool]:
        """Score through `scorer`'s pinned pipeline and keep the best `keep`; on failure or timeout, the
        first `keep` as they stand. Also says whether the candidates were scored.
        """
        scores = await run.guarded(
            scorer, lambda: self._triton(scorer, version, user_id, cands, history, timestamp, run.arm),
            fallback=None,
        )
        if scores is None:
            out = cands.take(np.arange(min(keep, len(cands))))
        else:
            order = np.argsort(-scores, kind="stable")[:keep]
            out = Candidates(cands.item_ids, cands.channels, scores.astype(np.float32), cands.channel_names).take(order)
        run.count(scorer, len(cands), len(out))
        return out, scores is not None

    async def _recall(self, run: RequestRun, user_id: int, history: np.ndarray | None, timestamp: int) -> Candidates:
        """Recall is timed but never cut short: every later stage works on what it finds."""
        with run.stage("recall"):
            try:
                cands = await self.recall(user_id, history, timestamp)
            except Exception as err:  # the ANN channel failed: the cold-start channels (popular) answer
                run.degrade("recall", err)
                cands = await self.recall(user_id, None, timestamp)
        per_channel = np.bincount(cands.channels, minlength=len(cands.channel_names))
        self.metrics.count_recall(dict(zip(cands.channel_names, per_channel.tolist())), run.arm)
        run.count("recall", self.resources.tables.n_items, len(cands))
        return cands

    async def _user_state(self, run: RequestRun, user_id: int) -> UserState | None:
        """Both exposure buffers and the live clicks, one Redis round trip, read before recall (which
        needs the clicks); its time is the exposure filter's. None if Redis failed: no filter, no clicks."""
        return await run.guarded("exposure_filter", lambda: self.exposure.user_state(user_id), fallback=None)

    def _filter_exposed(self, run: RequestRun, state: UserState | None, cands: Candidates, k: int) -> Candidates:
        out = cands
        if state is not None:
            out = cands.take(filter_exposed(cands.item_ids, state.exposed, min_keep=k, seen=state.seen))
            self.metrics.count_exposure_filter(len(cands), len(out), run.arm)
        run.count("exposure_filter", len(cands), len(out))
        return out

    def _rerank(self, run: RequestRun, cands: Candidates, k: int, scored: bool, chain: list | None = None) -> Candidates:
        r = self.resources
        # Unscored candidates are in recall's order, their scores from different channels: rerank by position.
        relevance = cands.scores if scored else np.linspace(1.0, 0.0, len(cands), dtype=np.float32)
        with run.stage("rerank"):
            try:
                batch = RerankInput(
                    cands.item_ids, relevance, r.tables.item_category[cands.item_ids], r.item_embeddings[cands.item_ids]
                )
                final = cands.take(apply_chain(self.chain if chain is None else chain, batch, k))
            except Exception as err:  # a faulty operator: the order stands, cut at k
                run.degrade("rerank", err)
                final = cands.take(np.arange(min(k, len(cands))))
        run.count("rerank", len(cands), len(final))
        return final

    def _sample(self, request_id: str, user_id: int, history: np.ndarray, timestamp: int, final: Candidates,
                scored_by: str, versions: dict[str, int], experiment: str, arm: str) -> dict[str, bytes] | None:
        """The answer's served sample, its features assembled by the code the pipelines ran, from the
        inputs they received (`cascade.samples`); None when sample logging is off."""
        if not self.settings.sample_log:
            return None
        features, _ = assemble_requests(self.resources.tables, [(user_id, final.item_ids, history, timestamp)])
        return encode_sample(ServedSample(
            request_id, user_id, timestamp, scored_by, versions, experiment, arm, final.item_ids, final.scores, features,
        ))

    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        s, r = self.settings, self.resources
        user_id, k = request.user_id, request.k
        arm = self.arm_of(user_id)
        arm_name = arm.name if arm is not None else "none"
        experiment = self.experiment.name if self.experiment is not None else "none"
        run = RequestRun(
            Deadline.start(s.request_deadline_ms, s.stage_budgets_ms, s.deadline_rollover, time.perf_counter()),
            self.metrics, arm_name,
        )
        self.metrics.count_arm(experiment, arm_name)
        # One read of the active versions per request: a switch mid-request never mixes versions.
        versions = {**self.versions.active, **((arm.model_versions if arm is not None else None) or {})}
        timestamp = request.context.timestamp if request.context and request.context.timestamp is not None else int(time.time())
        state = await self._user_state(run, user_id)
        known_history = r.history_of(user_id)
        clicks = state.clicks if state is not None else np.empty(0, np.int64)
        # The exported sequence, then the live clicks (POST /v1/feedback); a cold-start user with
        # clicks is recalled from them (ANN), one without from the popular channel alone.
        history = merge_live_history(known_history, clicks, r.tables.config.history_len)
        recall_history = history if known_history is not None or len(clicks) else None

        cands = await self._recall(run, user_id, recall_history, timestamp)
        cands = self._filter_exposed(run, state, cands, k)
        cands, prescored = await self._score(
            run, "prerank", versions["prerank"], user_id, cands, history, timestamp, max(s.prerank_keep, k)
        )
        cands, ranked = await self._score(
            run, "rank", versions["rank"], user_id, cands, history, timestamp, max(s.rank_keep, k)
        )
        chain = self.arm_chains[arm.name] if arm is not None else None
        final = self._rerank(run, cands, k, scored=ranked or prescored, chain=chain)
        request_id = uuid.uuid4().hex
        scored_by = "rank" if ranked else "prerank" if prescored else "none"
        sample = self._sample(request_id, user_id, history, timestamp, final, scored_by, versions, experiment, arm_name)
        await run.guarded(
            "exposure_write", lambda: self.exposure.record_served(user_id, final.item_ids, sample), fallback=None
        )
        items = [
            Item(item_id=int(i), score=float(sc), category=int(r.tables.item_category[i]), channel=final.channel_names[c])
            for i, sc, c in zip(final.item_ids, final.scores, final.channels)
        ]
        return RecommendResponse(
            request_id=request_id, user_id=user_id, cold_start=recall_history is None, items=items,
            model_versions={**r.manifest.model_versions, **versions}, scored_by=scored_by,
            experiment=ExperimentArm(name=experiment, arm=arm.name) if arm is not None else None,
            latency_ms=run.total_ms(time.perf_counter()),
            degraded=run.degraded,
        )
