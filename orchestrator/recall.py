"""The recall stage at serving time: the configured channels run concurrently and merge with per-channel quotas.

The ANN channel (whose ONNX Runtime and FAISS calls release the GIL) runs on a small thread pool
(CASCADE_RECALL_THREADS: at most that many ANN batches at once), micro-batched across concurrent
requests (`orchestrator.ann_batcher`), while the in-memory channels (item-to-item, popular,
exploration) run on the event loop, which also stays free for other requests.

The channel file (CASCADE_RECALL_CONFIG, `cascade.recall.channels`) is read at start and swapped
whole on reload, together with what every request derives from it (`RecallPlan`: channels, quotas,
limit, for known and for cold-start users); a request reads it once, so it never sees half of an
old and half of a new one.
The trending list is read from Redis in the background at most every CASCADE_POPULAR_REFRESH_S
(a request never waits on Redis for it); until the first read, or with Redis down, the popular
channel is the training-popularity list. Built with `trending=False` (offline: the evaluation, the
in-process floor) it never reads Redis and the popular channel stays the training-popularity list.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import redis.asyncio as redis

from cascade.features import FeatureTables
from cascade.history import PAD_ITEM
from cascade.recall.ann import AnnRecall, single_threaded_faiss
from cascade.recall.channels import EXPLORE, ChannelSpec, RecallConfig, load_recall_config
from cascade.recall.item_to_item import ItemToItemIndex, item_to_item_candidates
from cascade.recall.merge import Candidates, merge_channels
from cascade.recall.popular import DECAY_EPOCH, explore_new_items, trending_with_fallback
from cascade.settings import Settings
from orchestrator.ann_batcher import AnnBatcher
from orchestrator.clients import keys
from orchestrator.clients.redis_client import Client, connect

log = logging.getLogger("cascade.orchestrator")
Channel = tuple[str, np.ndarray, np.ndarray]  # (name, item ids best first, the channel's scores)


@dataclass(frozen=True)
class RecallPlan:
    """What recall runs for one kind of user (known or cold start) under one channel file."""

    channels: tuple[ChannelSpec, ...]  # priority order, quota > 0
    explore: int  # exploration slots
    quotas: dict[str, int]  # per channel name, EXPLORE included; read only
    limit: int  # the merge's cut: all quotas together
    has_ann: bool  # the ANN channel is among `channels`

    @staticmethod
    def of(config: RecallConfig, defaults: dict[str, int], cold: bool) -> RecallPlan:
        quotas = config.quotas(defaults)
        wanted = set(config.cold_start_channels) if cold else set(quotas)
        explore = config.cold_start_explore if cold else config.explore_new_items
        channels = tuple(spec for spec in config.channels if spec.name in wanted and quotas[spec.name] > 0)
        quotas[EXPLORE] = explore
        limit = sum(quotas[spec.name] for spec in channels) + explore
        return RecallPlan(channels, explore, quotas, limit, any(spec.name == "ann" for spec in channels))

    def merge(self, channels: list[Channel]) -> Candidates:
        """The channels' lists (priority order, as `RecallChannels.channel_lists` gives them) merged
        with this plan's quotas and limit: the recall stage's answer."""
        return merge_channels(channels, limit=self.limit, quotas=self.quotas)


@dataclass(frozen=True)
class RecallSnapshot:
    """The channel file and its plans, swapped as one on reload."""

    config: RecallConfig
    known: RecallPlan
    cold: RecallPlan


class RecallChannels:
    def __init__(
        self, settings: Settings, tables: FeatureTables, ann: AnnRecall, item_to_item: ItemToItemIndex | None,
        popular_ids: np.ndarray, popular_scores: np.ndarray, *, trending: bool = True,
    ) -> None:
        self.settings, self.tables, self.item_to_item = settings, tables, item_to_item
        self.trending = trending  # False: never read Redis, the popular channel is `popular_ids`
        self.offline_popular = (popular_ids, popular_scores)
        self.popular = self.offline_popular
        self.new_items = np.flatnonzero(tables.item_positives == 0).astype(np.int64)
        self.cold_history = np.full(tables.config.history_len, PAD_ITEM, np.int64)  # ANN input without history
        self.defaults = {
            "ann": settings.recall_ann_k, "popular": settings.recall_popular_k, "item_to_item": settings.recall_i2i_k,
        }
        self.snapshot = self._snapshot_of(load_recall_config(settings.recall_config))
        self._redis: Client | None = None
        self._refreshed_at = float("-inf")
        self._refreshing: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(
            max_workers=settings.recall_threads, thread_name_prefix="recall", initializer=single_threaded_faiss
        )
        self.ann_batcher = AnnBatcher(ann.search_many, self._pool, max_in_flight=settings.recall_threads)

    # --- configuration -----------------------------------------------------------------
    @property
    def config(self) -> RecallConfig:
        return self.snapshot.config

    def _snapshot_of(self, config: RecallConfig) -> RecallSnapshot:
        return RecallSnapshot(
            config, RecallPlan.of(config, self.defaults, cold=False), RecallPlan.of(config, self.defaults, cold=True)
        )

    def reload(self) -> RecallConfig:
        """Re-read the file; on a ValueError the previous configuration stays."""
        self.snapshot = self._snapshot_of(load_recall_config(self.settings.recall_config))
        log.info("recall channels reloaded from %s: %s", self.config.source, self.describe())
        return self.config

    def describe(self) -> dict:
        c = self.config
        quotas = self.snapshot.known.quotas
        return {
            "source": c.source,
            "channels": [{"name": s.name, "quota": quotas[s.name]} for s in c.channels],
            "explore_new_items": c.explore_new_items,
            "cold_start": {"channels": list(c.cold_start_channels), "explore_new_items": c.cold_start_explore},
        }

    # --- the stage ---------------------------------------------------------------------
    async def recall(self, user_id: int, history: np.ndarray | None, timestamp: int) -> Candidates:
        """Candidates for one user; `history` None is a cold-start user (cold-start channels + exploration)."""
        plan, channels = await self.channel_lists(user_id, history, timestamp)
        return plan.merge(channels)

    async def channel_lists(
        self, user_id: int, history: np.ndarray | None, timestamp: int
    ) -> tuple[RecallPlan, list[Channel]]:
        """Each channel's own list for one user before the merge, in priority order (exploration last),
        and the plan they came from: what `recall` merges, and what an evaluation scores channel by channel."""
        self._schedule_trending_refresh()
        snapshot = self.snapshot  # one read for the whole request
        plan = snapshot.cold if history is None else snapshot.known
        ann = None
        if plan.has_ann:  # on its way before the in-memory channels run
            ann_history = self.cold_history if history is None else history
            ann = self.ann_batcher.submit(user_id, ann_history, timestamp, plan.quotas["ann"])
        found = {spec.name: self._in_memory_channel(spec, history) for spec in plan.channels if spec.name != "ann"}
        if ann is not None:
            found["ann"] = await ann
        channels = [(spec.name, *found[spec.name]) for spec in plan.channels]
        if plan.explore > 0:
            seed = (user_id * 1_000_003 + timestamp // 86_400) & 0x7FFFFFFF  # a user's draw changes daily
            channels.append((EXPLORE, *explore_new_items(self.new_items, plan.explore, seed)))
        return plan, channels

    def _in_memory_channel(self, spec: ChannelSpec, history: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if spec.name == "item_to_item":
            if self.item_to_item is None or history is None:
                return np.empty(0, np.int64), np.empty(0, np.float32)
            # Every candidate (at most recent x M), not just `quota`: earlier channels hold some of them.
            return item_to_item_candidates(
                self.item_to_item, history, spec.recent * self.item_to_item.neighbours.shape[1], spec.recent, spec.decay
            )
        if spec.name == "popular":  # the whole list (ann_k + popular_k long): earlier channels hold some of it
            return self.popular
        raise ValueError(f"unknown recall channel {spec.name!r}")

    # --- trending from Redis -----------------------------------------------------------
    def _schedule_trending_refresh(self) -> None:
        if not self.trending or time.monotonic() - self._refreshed_at < self.settings.popular_refresh_s:
            return
        if self._refreshing is not None and not self._refreshing.done():
            return
        try:
            self._refreshing = asyncio.get_running_loop().create_task(self.refresh_trending())
        except RuntimeError:  # no event loop (offline use): the offline list stands
            pass

    async def refresh_trending(self) -> None:
        """Read the top of trending (`keys.POPULAR`) and top it up with the offline list; Redis down: the list stands."""
        self._refreshed_at = time.monotonic()
        k = len(self.offline_popular[0])
        if self._redis is None:
            self._redis = connect(
                self.settings.effective_redis_url, self.settings.redis_cluster, socket_timeout=0.5, socket_connect_timeout=0.5,
            )
        try:  # the list and the epoch its scores are relative to, read together (the writer rolls both at once)
            async with self._redis.pipeline(transaction=True) as pipe:
                rows, epoch = await pipe.zrevrange(keys.POPULAR, 0, k - 1, withscores=True).get(keys.POPULAR_EPOCH).execute()
        except (redis.RedisError, OSError) as err:
            log.warning("trending list not refreshed (%s); the popular channel keeps its previous list", err)
            return
        ids = np.array([int(member) for member, _ in rows], np.int64)
        scores = np.array([score for _, score in rows], np.float64)
        keep = (ids >= 0) & (ids < self.tables.n_items)
        self.popular = trending_with_fallback(
            ids[keep], scores[keep], time.time(), self.settings.popular_decay_tau_s, *self.offline_popular, k,
            epoch=float(epoch) if epoch is not None else DECAY_EPOCH,
        )

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()
        if self._redis is not None:
            await self._redis.aclose()
