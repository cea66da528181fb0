"""The look-alike request path over in-memory fakes: the pool, the blend, the fallbacks, cold start."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from cascade.experiments import parse_experiments
from cascade.geo import haversine_km
from cascade.lookalike.audience import Likers
from cascade.lookalike.users import UserSide, UserTable
from cascade.recall.exact import ExactInnerProduct
from cascade.settings import Settings
from orchestrator.context import ContextFactory
from orchestrator.lookalike import LookalikeQuery, LookalikeService, Near, NoSeeds
from orchestrator.metrics import FunnelMetrics

USERS, DIM = 60, 8


def world(seed: int = 0, behaviour: bool = True) -> UserTable:
    """Two groups of users, far apart in embedding space and in place (group g near (40, g))."""
    rng = np.random.default_rng(seed)
    group = np.arange(USERS) % 2
    centres = np.eye(DIM, dtype=np.float32)[:2]
    emb = centres[group] + 0.05 * rng.normal(size=(USERS, DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    fields = np.stack([group, group + 10, np.zeros(USERS, int), group], axis=1).astype(np.int64)
    activity = np.full((USERS, 1), 2.0 if behaviour else 0.0, np.float32)
    lat = 40.0 + 0.01 * rng.normal(size=USERS)
    lon = group * 1.0 + 0.01 * rng.normal(size=USERS)
    return UserTable(UserSide(emb, fields, activity), lat, lon)


class Places:
    def __init__(self, table: UserTable, down: bool = False) -> None:
        self.table, self.down = table, down

    async def nearby(self, lat, lon, radius_km, most):
        if self.down:
            raise ConnectionError("redis down")
        km = haversine_km(lat, lon, self.table.lat, self.table.lon)
        inside = np.flatnonzero(km <= radius_km)
        order = inside[np.argsort(km[inside], kind="stable")][:most]
        return order.astype(np.int64), km[order]

    async def where(self, user_ids):
        return self.table.lat[user_ids], self.table.lon[user_ids]


class Live:
    def __init__(self, vectors: dict[int, np.ndarray] | None = None) -> None:
        self.vectors = vectors or {}

    async def get(self, user_ids, dim):
        return {u: v for u, v in self.vectors.items() if u in set(user_ids.tolist())}


class Scorer:
    """Similarity = the candidate's cosine with the first seed's embedding as sent, mapped to [0, 1];
    or down, or slow."""

    def __init__(self, table: UserTable, fail: Exception | None = None, delay_s: float = 0.0) -> None:
        self.table, self.fail, self.delay_s, self.calls = table, fail, delay_s, []

    async def score_lookalike(self, version, seeds, seed_embeddings, candidates):
        self.calls.append((version, seeds.copy(), candidates.copy()))
        self.sent = seed_embeddings.copy()
        await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        return ((self.table.side.embedding[candidates] @ seed_embeddings[0] + 1) / 2).astype(np.float32)


def service(table: UserTable, scorer=None, places=None, live=None, **overrides) -> LookalikeService:
    settings = Settings(lookalike_pool=20, lookalike_nearby_max=50, **overrides)
    likers = Likers.of(np.array([0, 0, 0, 1]), np.array([2, 4, 6, 3]), np.array([1, 2, 3, 1]), n_items=3)
    return LookalikeService(settings, table, likers, ExactInnerProduct(table.side.embedding), places or Places(table), live or Live(),
                            scorer or Scorer(table), 1, ContextFactory(settings, {"prerank": 1, "rank": 1}), FunnelMetrics())


def query(seeds=(0, 2, 4), item=None, k=10, near=None, exclude=True) -> LookalikeQuery:
    return LookalikeQuery(None if seeds is None else np.array(seeds), item, k, near, exclude)


async def test_the_seeds_group_comes_back_best_first_without_the_seeds() -> None:
    table = world()
    answer = await service(table).expand(query(), time.perf_counter())
    assert answer.scored_by == "model" and answer.degraded == [] and not answer.cold_start
    assert len(answer.user_ids) == 10 and set(answer.user_ids.tolist()).isdisjoint({0, 2, 4})
    assert (answer.user_ids % 2 == 0).all()  # the seeds' group
    assert (np.diff(answer.score) <= 0).all() and answer.distance_km is None
    np.testing.assert_array_equal(answer.score, answer.similarity)  # no place: the similarity alone
    assert set(answer.latency_ms) == {"seeds", "recall", "score", "blend", "total"}


async def test_exclude_seeds_false_keeps_them() -> None:
    answer = await service(world()).expand(query(seeds=(0,), k=5, exclude=False), time.perf_counter())
    assert 0 in answer.user_ids.tolist()


async def test_an_item_seeds_from_its_likers() -> None:
    svc = service(world())
    answer = await svc.expand(query(seeds=None, item=0), time.perf_counter())
    assert answer.n_seeds == 3 and set(answer.user_ids.tolist()).isdisjoint({2, 4, 6})
    with pytest.raises(NoSeeds, match="item 2 has no users"):
        await svc.expand(query(seeds=None, item=2), time.perf_counter())


async def test_near_keeps_users_inside_the_radius_and_orders_by_the_blend() -> None:
    table = world()
    svc = service(table)
    near = Near(40.0, 1.0, 5.0)  # group 1's place; seeds from group 0
    answer = await svc.expand(query(near=near, k=50), time.perf_counter())
    truth = haversine_km(40.0, 1.0, table.lat[answer.user_ids], table.lon[answer.user_ids])
    np.testing.assert_allclose(answer.distance_km, truth, atol=1e-9)
    assert (answer.distance_km <= 5.0).all() and (answer.user_ids % 2 == 1).all()
    closeness = np.clip(1 - answer.distance_km / 5.0, 0, 1)
    np.testing.assert_allclose(answer.score, 0.6 * closeness + 0.4 * answer.similarity, rtol=1e-5)
    assert (np.diff(answer.score) <= 1e-7).all()


async def test_geo_down_falls_back_to_the_exported_places() -> None:
    table = world()
    up = await service(table).expand(query(near=Near(40.0, 0.0, 3.0)), time.perf_counter())
    down = await service(table, places=Places(table, down=True)).expand(query(near=Near(40.0, 0.0, 3.0)), time.perf_counter())
    assert [(d.stage, d.reason) for d in down.degraded] == [("geo", "unavailable")]
    np.testing.assert_array_equal(up.user_ids, down.user_ids)


@pytest.mark.parametrize(("fail", "delay", "reason"), [(ConnectionError("triton down"), 0.0, "unavailable"), (None, 0.2, "timeout")])
async def test_scorer_down_or_late_ranks_by_embedding_and_says_so(fail, delay, reason) -> None:
    table = world()
    svc = service(table, scorer=Scorer(table, fail, delay), lookalike_deadline_ms=50.0)
    answer = await svc.expand(query(), time.perf_counter())
    assert answer.scored_by == "embedding" and [(d.stage, d.reason) for d in answer.degraded] == [("score", reason)]
    assert (answer.user_ids % 2 == 0).all() and len(answer.user_ids) == 10


async def test_a_live_embedding_moves_the_query_and_is_what_the_scorer_gets() -> None:
    table = world()
    other = table.side.embedding[1]  # seed 0 now behaves like group 1
    scorer = Scorer(table)
    answer = await service(table, scorer=scorer, live=Live({0: other})).expand(query(seeds=(0, 2)), time.perf_counter())
    assert (answer.user_ids[:5] % 2 == 1).all()
    np.testing.assert_array_equal(scorer.sent, np.stack([other, table.side.embedding[2]]))  # seed 2: the exported one


async def test_seeds_without_behaviour_go_by_rules_near_them() -> None:
    table = world(behaviour=False)
    scorer = Scorer(table)
    answer = await service(table, scorer=scorer).expand(query(seeds=(1, 3)), time.perf_counter())
    assert answer.cold_start and answer.scored_by == "rules" and scorer.calls == []
    assert (answer.user_ids % 2 == 1).all()  # same demographics, same place
    assert (answer.similarity == 1.0).all() and answer.distance_km is None


async def test_an_experiment_arm_picks_the_scorer_version() -> None:
    table = world()
    scorer = Scorer(table)
    arms = [{"name": "la", "arms": [{"name": "v2", "weight": 1, "model_versions": {"lookalike": 2}}]}]
    svc = service(table, scorer=scorer, experiments=arms)
    answer = await svc.expand(query(), time.perf_counter())
    assert answer.model_version == 2 and answer.experiment == ("la", "v2") and scorer.calls[0][0] == 2
    assert parse_experiments(arms)[0].arms[0].model_versions == {"lookalike": 2}
    assert dict(svc.contexts.build(1, 10, None).versions) == {"prerank": 1, "rank": 1}  # recommendations never call it
