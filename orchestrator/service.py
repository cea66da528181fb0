"""What the app holds while it serves: the exported artefacts, the clients, the scorer versions, the
context factory and the funnel's ports. Routes call `recommend`; the funnel itself is
`orchestrator.funnel.run_funnel`, a short function over narrow interfaces.

Scorers are called at pinned versions (`rank_pipeline_v2`), those `orchestrator.versions` has active
or an experiment arm pins, so every answer names the versions that scored it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Set

import numpy as np

from cascade.history import PAD_ITEM
from cascade.recall.merge import Candidates
from cascade.settings import Settings
from orchestrator.clients.exposure import ExposureStore
from orchestrator.clients.triton import TritonScorer
from orchestrator.context import ContextFactory
from orchestrator.deadlines import DeadlinePlan
from orchestrator.experiments import SharedExperiments
from orchestrator.funnel import Answer, FunnelPorts, run_funnel
from orchestrator.logs import log_degraded
from orchestrator.metrics import FunnelMetrics
from orchestrator.ports import OperatorBoard
from orchestrator.resources import Resources
from orchestrator.stages import RequestRun, ThrottledLog
from orchestrator.versions import ScorerVersions

log = logging.getLogger("cascade.orchestrator")


class FunnelRunner:
    """Requests in, answers out, over given ports: the context factory, the deadline plan, the metrics.
    The service runs it on Triton and Redis; `perf/floor.py` on in-process scorers and memory."""

    def __init__(
        self, settings: Settings, ports: FunnelPorts, active_versions: Mapping[str, int], metrics: FunnelMetrics,
        two_stage: Set[tuple[int, int]] = frozenset(),
    ) -> None:
        self.ports, self.metrics = ports, metrics
        self.contexts = ContextFactory(settings, active_versions, two_stage)
        self.plan = DeadlinePlan.from_ms(settings.request_deadline_ms, settings.stage_budgets_ms, settings.deadline_slack)

    async def recommend(self, user_id: int, k: int, timestamp: int | None, started: float) -> Answer:
        """One answer; `started` is when the request arrived (a wait at the door counts against its deadline)."""
        ctx = self.contexts.build(user_id, k, timestamp)
        self.metrics.count_arm(ctx.experiment_label, ctx.arm)
        run = RequestRun(self.plan, started, self.metrics, ctx.arm)
        answer = await run_funnel(ctx, self.ports, run)
        if run.degraded:
            log_degraded(ctx.request_id, ctx.user_id, ctx.arm, answer.scored_by, run.degraded_stages())
        return answer


class FunnelService:
    def __init__(
        self, settings: Settings, resources: Resources, scorer: TritonScorer, exposure: ExposureStore, metrics: FunnelMetrics,
        board: OperatorBoard | None = None,
    ) -> None:
        self.settings, self.resources, self.scorer, self.exposure = settings, resources, scorer, exposure
        self.metrics, self.board = metrics, board
        self.versions = ScorerVersions(resources.manifest.model_versions, board)
        self._recall_reloads = 0  # the board's count of recall reloads this process has caught up with
        ports = FunnelPorts(
            resources.channels, scorer, exposure, resources, settings.prerank_keep, settings.rank_keep, settings.sample_log,
        )
        self.runner = FunnelRunner(settings, ports, self.versions.active, metrics, self.versions.two_stage)
        self.experiments = SharedExperiments(self.runner.contexts, board)

    def pinned_versions(self, scorer: str) -> list[int]:
        return self.runner.contexts.pinned_versions(scorer)

    def issued(self, request_id: str, user_id: int) -> bool:
        """Whether this service gave `user_id` an answer with `request_id` (`cascade.request_ids`)."""
        return self.runner.contexts.ids.valid(request_id, user_id)

    async def recommend(self, user_id: int, k: int, timestamp: int | None, started: float) -> Answer:
        return await self.runner.recommend(user_id, k, timestamp, started)

    async def recall(self, user_id: int, history: np.ndarray | None, timestamp: int) -> Candidates:
        """The recall stage alone (`history` None: a cold-start user)."""
        return await self.resources.channels.recall(user_id, history, timestamp)

    def switch_warm_up(self, scorer: str) -> Callable[[Mapping[str, int], bool], Awaitable[object]]:
        """For a switch of `scorer`: one request of popular items at given versions, through the two-stage
        model or `scorer`'s pinned pipeline (`ScorerVersions.activate`)."""
        items = self.resources.popular_ids[: self.settings.rank_keep]
        history = np.full(self.resources.tables.config.history_len, PAD_ITEM, np.int64)

        async def warm(versions: Mapping[str, int], two_stage: bool) -> object:
            now = int(time.time())
            if two_stage:
                return await self.scorer.score_two_stage(versions, 0, items, history, now, self.settings.prerank_keep)
            return await self.scorer.score(scorer, versions[scorer], 0, items, history, now)

        return warm

    def reload_recall(self) -> dict:
        """Re-read the recall config in this process; returns what is in force. Raises ValueError
        naming the problem (the previous config stays)."""
        self.resources.channels.reload()
        return self.resources.channels.describe()

    async def share_recall_reload(self) -> None:
        """Tell the other processes to re-read the recall config too (`follow_shared`)."""
        if self.board is not None:
            self._recall_reloads = await self.board.count_recall_reload()

    async def follow_shared(self) -> None:
        """Forever: every CASCADE_VERSIONS_POLL_S, move to the scorer versions another process switched
        to (`ScorerVersions.follow`), serve under the experiments another process set
        (`SharedExperiments.follow`), and re-read the recall config when another process was told to.
        Each is followed on its own: a failure (Redis or Triton down) is logged and retried at the next
        poll, and what is in force stays."""
        if self.board is None:
            return
        warnings = ThrottledLog(interval_s=60.0)
        try:
            self._recall_reloads = await self.board.recall_reloads()  # this process read the file at start
        except Exception as err:  # noqa: BLE001 - Redis down: later reloads are caught up with when it is back
            log.warning("recall reloads not read from the board: %s", err)
        followers = {  # the experiments first: a version switch waits for its warm-up
            "experiments": self.experiments.follow, "scorer versions": self._follow_versions,
            "recall reloads": self._follow_recall_reloads,
        }
        while True:
            await asyncio.sleep(self.settings.versions_poll_s)
            for what, follow in followers.items():
                try:
                    await follow()
                except Exception as err:  # noqa: BLE001 - the next poll tries again
                    warnings.warn((what, type(err).__name__), f"shared {what} not followed: {err}", time.monotonic())

    async def _follow_versions(self) -> None:
        if await self.versions.follow(self.scorer, self.switch_warm_up):
            self.metrics.set_active_versions(self.versions.active)

    async def _follow_recall_reloads(self) -> None:
        asked = await self.board.recall_reloads()
        if asked > self._recall_reloads:
            self._recall_reloads = asked
            try:
                self.reload_recall()
                self.metrics.count_recall_reload(ok=True)
                log.info("recall config re-read: another process was told to")
            except ValueError as err:
                self.metrics.count_recall_reload(ok=False)
                log.warning("recall config not re-read (the previous one stays): %s", err)

    async def warm_up(self) -> None:
        """Read the servable scorer versions and the shared experiments, then one full-size request's
        worth of work (ANN recall, then both scorers at the sizes they will see, and the two-stage model
        where the active pair has one), so the first user request pays no lazy initialisation or allocation."""
        await self.versions.discover(self.scorer)
        await self.experiments.discover()
        r, s = self.resources, self.settings
        now = int(time.time())
        history = r.history_of(0)
        try:
            cands = (await self.recall(0, history, now)).item_ids
        except Exception as err:  # requests fall back to the popular channel; say so once here
            log.warning("warm-up of recall failed: %s", err)
            cands = r.popular_ids
        history = history if history is not None else np.full(r.tables.config.history_len, PAD_ITEM, np.int64)
        active = self.versions.active
        calls = {f"{scorer} version {active[scorer]}": self.scorer.score(scorer, active[scorer], 0, cands[:n], history, now)
                 for scorer, n in (("prerank", len(cands)), ("rank", s.prerank_keep))}
        if (active["prerank"], active["rank"]) in self.versions.two_stage:
            calls["the two-stage model"] = self.scorer.score_two_stage(active, 0, cands, history, now, s.prerank_keep)
        for name, call in calls.items():
            try:
                await call
            except Exception as err:  # Triton not up yet: /readyz says so, requests degrade
                log.warning("warm-up of %s failed: %s", name, err)
