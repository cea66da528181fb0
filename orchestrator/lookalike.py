"""POST /v1/lookalike's request path: seed users in, the users most like them out, nearest first
when a place is asked for.

    seeds      the named users, or an item's latest likers (`cascade.lookalike.audience.Likers`); a
               seed's embedding is its live one (re-computed from live clicks, Redis) where fresh
    recall     the users nearest the seeds' mean direction in the users' index (FAISS)
    geo        with `near`: the users within its radius (Redis GEOSEARCH), joined with recall
               (`candidate_pool`)
    score      the look-alike scorer on Triton, the seeds against the pool, at the version the
               request's experiment arm pins (else the exported one)
    blend      `Blend`: distance and similarity; the best k

Seeds without behaviour (no training events, no live clicks) have no embedding worth searching with:
the rules take over (`rule_candidates`: demographics, among the users near the place asked for or
near the seeds). A stage that fails degrades the answer instead of failing it, and says so in
`degraded`: Redis GEO down, distances come from the export's locations; the scorer down or late,
the similarity is the cosine with the seeds' mean direction (`scored_by: embedding`); the live
embeddings unreadable, the exported ones stand.
"""
from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from cascade.geo import haversine_km
from cascade.lookalike.audience import Blend, Likers, candidate_pool, rule_candidates
from cascade.lookalike.seeds import mean_query
from cascade.lookalike.users import UserTable
from cascade.ordering import best_first
from cascade.settings import Settings
from orchestrator.context import NONE, ContextFactory
from orchestrator.logs import log_degraded
from orchestrator.metrics import FunnelMetrics
from orchestrator.ports import AudienceScorer, LiveEmbeddings, Places, UserIndex
from orchestrator.stages import Degradation, Degradations

ScoredBy = Literal["model", "embedding", "rules"]


@dataclass(frozen=True)
class Near:
    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True)
class LookalikeQuery:
    seeds: np.ndarray | None  # user ids; None: the item's likers
    item_id: int | None
    k: int
    near: Near | None
    exclude_seeds: bool


@dataclass
class LookalikeAnswer:
    request_id: str
    user_ids: np.ndarray
    similarity: np.ndarray
    distance_km: np.ndarray | None  # None: no place was asked for
    score: np.ndarray
    n_seeds: int
    model_version: int
    scored_by: ScoredBy
    cold_start: bool
    experiment: tuple[str, str] | None  # (experiment, arm)
    latency_ms: dict[str, float] = field(default_factory=dict)
    degraded: list[Degradation] = field(default_factory=list)


class NoSeeds(ValueError):
    """The item has no likers to seed an audience from."""


class LookalikeService:
    def __init__(self, settings: Settings, table: UserTable, likers: Likers, index: UserIndex, places: Places,
                 live: LiveEmbeddings, scorer: AudienceScorer, version: int, contexts: ContextFactory,
                 metrics: FunnelMetrics) -> None:
        self.settings, self.table, self.likers, self.index = settings, table, likers, index
        self.places, self.live, self.scorer, self.version = places, live, scorer, version
        self.contexts, self.metrics = contexts, metrics
        self.blend = Blend(settings.lookalike_distance_weight, settings.lookalike_similarity_weight,
                           settings.lookalike_distance_scale_km)

    def seeds_of(self, query: LookalikeQuery) -> np.ndarray:
        if query.seeds is not None:
            return np.unique(np.asarray(query.seeds, np.int64))
        seeds = self.likers.of_item(query.item_id, self.settings.lookalike_max_seeds)
        if not len(seeds):
            raise NoSeeds(f"item {query.item_id} has no users who liked it in training: name seed_user_ids instead")
        return np.unique(seeds)

    def arm(self, key: int) -> tuple[int, tuple[str, str] | None]:
        """The scorer version for a request keyed `key` (its item, else its smallest seed id: the same
        arm for a seed set in any order) and its arm."""
        experiment = self.contexts.in_force.experiment
        if experiment is None:
            return self.version, None
        arm = experiment.assign(key)
        return (arm.model_versions or {}).get("lookalike", self.version), (experiment.name, arm.name)

    async def expand(self, query: LookalikeQuery, started: float) -> LookalikeAnswer:
        seeds = self.seeds_of(query)
        version, arm = self.arm(int(query.item_id if query.item_id is not None else seeds[0]))
        run = _Run(started, self.settings.lookalike_deadline_ms / 1e3)
        exclude = seeds if query.exclude_seeds else np.empty(0, np.int64)
        with run.stage("seeds"):
            embeddings, behaviour = await self._seed_embeddings(seeds, run)
        if not behaviour.any():
            answer = await self._by_rules(query, seeds, exclude, run)
        else:
            answer = await self._by_model(query, seeds, embeddings, behaviour, exclude, version, run)
        order = best_first(answer.score, query.k)
        answer.user_ids, answer.similarity, answer.score = answer.user_ids[order], answer.similarity[order], answer.score[order]
        answer.distance_km = answer.distance_km[order] if answer.distance_km is not None else None
        answer.model_version, answer.experiment = version, arm
        answer.latency_ms, answer.degraded = run.finish(), run.degraded
        self.metrics.count_lookalike(answer.scored_by, answer.latency_ms, [(d.stage, d.reason) for d in run.degraded])
        if run.degraded:
            log_degraded(answer.request_id, int(seeds[0]), arm[1] if arm else NONE, answer.scored_by, run.degraded_stages())
        return answer

    async def _seed_embeddings(self, seeds: np.ndarray, run: "_Run") -> tuple[np.ndarray, np.ndarray]:
        """The seeds' embeddings (live where fresh) and which seeds have behaviour."""
        embeddings, behaviour = self.table.side.embedding[seeds], self.table.side.activity[seeds, 0] > 0  # fancy indexing: copies
        try:
            live = await self.live.get(seeds, embeddings.shape[1])
        except Exception as err:  # noqa: BLE001 - the exported embeddings stand
            run.degrade("seeds", err)
            live = {}
        for row, user in enumerate(seeds.tolist()):
            if user in live:
                embeddings[row], behaviour[row] = live[user], True
        return embeddings, behaviour

    async def _nearby(self, near: Near, run: "_Run") -> tuple[np.ndarray, np.ndarray]:
        """Users within the radius, nearest first: Redis GEO, or the export's locations when it fails."""
        most = self.settings.lookalike_nearby_max
        with run.stage("geo"):
            try:
                return await self.places.nearby(near.lat, near.lon, near.radius_km, most)
            except Exception as err:  # noqa: BLE001 - the exported locations stand in
                run.degrade("geo", err)
                t = self.table
                located = np.flatnonzero(t.located)
                km = haversine_km(near.lat, near.lon, t.lat[located], t.lon[located])
                inside = np.flatnonzero(km <= near.radius_km)
                order = inside[np.argsort(km[inside], kind="stable")][:most]
                return located[order], km[order]

    async def _by_model(self, query: LookalikeQuery, seeds: np.ndarray, embeddings: np.ndarray, behaviour: np.ndarray,
                        exclude: np.ndarray, version: int, run: "_Run") -> LookalikeAnswer:
        """`embeddings`: every seed's, live where fresh; the seeds with behaviour steer the index search."""
        size = self.settings.lookalike_pool
        with run.stage("recall"):
            q = mean_query(embeddings[behaviour])
            _, ids = self.index.search(q[None], min(self.table.n_users, size + len(exclude)))
            similar = ids[0][ids[0] >= 0].astype(np.int64)
        nearby, km = (None, None) if query.near is None else await self._nearby(query.near, run)
        pool = candidate_pool(similar, nearby, exclude, size)
        with run.stage("score"):
            scored_by: ScoredBy = "model"
            try:
                similarity = await asyncio.wait_for(self.scorer.score_lookalike(version, seeds, embeddings, pool), run.left_s())
            except Exception as err:  # noqa: BLE001 - the seeds' mean direction stands in
                run.degrade("score", err)
                scored_by, similarity = "embedding", self.table.side.embedding[pool] @ q
        distance = None if nearby is None else _distances(pool, nearby, km)
        with run.stage("blend"):
            score = self.blend.scores(similarity, distance)
        return _answer(pool, similarity, distance, score, len(seeds), scored_by, cold_start=False)

    async def _by_rules(self, query: LookalikeQuery, seeds: np.ndarray, exclude: np.ndarray, run: "_Run") -> LookalikeAnswer:
        near = query.near
        if near is None:  # around the seeds, where they are known
            try:
                lat, lon = await self.places.where(seeds)
            except Exception as err:  # noqa: BLE001 - the exported locations stand in
                run.degrade("geo", err)
                lat, lon = self.table.lat[seeds], self.table.lon[seeds]
            known = ~np.isnan(lat)
            if known.any():
                near = Near(float(lat[known].mean()), float(lon[known].mean()), self.settings.lookalike_cold_radius_km)
        nearby, km = (None, None) if near is None else await self._nearby(near, run)
        t = self.table
        with run.stage("rules"):
            users, similarity = rule_candidates(t.side.fields[seeds], t.side.fields, t.side.activity, nearby, exclude,
                                                self.settings.lookalike_pool)
            distance = None if query.near is None else _distances(users, nearby, km)
            score = self.blend.scores(similarity, distance)
        return _answer(users, similarity, distance, score, len(seeds), "rules", cold_start=True)


def _distances(users: np.ndarray, nearby: np.ndarray, km: np.ndarray) -> np.ndarray:
    """Each of `users` (all among `nearby`) at its distance."""
    order = np.argsort(nearby, kind="stable")
    return km[order[np.searchsorted(nearby[order], users)]]


def _answer(users, similarity, distance, score, n_seeds, scored_by: ScoredBy, cold_start: bool) -> LookalikeAnswer:
    return LookalikeAnswer(secrets.token_hex(8), users, np.asarray(similarity, np.float32), distance,
                           score, n_seeds, 0, scored_by, cold_start, None)


class _Run(Degradations):
    """One request's clock: per-stage latencies, what degraded, and what is left of its deadline."""

    def __init__(self, started: float, deadline_s: float) -> None:
        super().__init__()
        self.started, self.deadline = started, started + deadline_s
        self.latency_ms: dict[str, float] = {}

    def left_s(self) -> float:
        return max(0.0, self.deadline - time.perf_counter())

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.latency_ms[name] = self.latency_ms.get(name, 0.0) + (time.perf_counter() - t0) * 1e3

    def finish(self) -> dict[str, float]:
        self.latency_ms["total"] = (time.perf_counter() - self.started) * 1e3
        return {k: round(v, 3) for k, v in self.latency_ms.items()}
