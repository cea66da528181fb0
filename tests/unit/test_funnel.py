"""The funnel over in-memory fakes: ordering, degradation, exposure, experiments. No servers."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from cascade.features import FeatureTables
from cascade.ordering import best_first
from cascade.recall.merge import Candidates
from cascade.settings import Settings
from cascade.triton.two_stage import TwoStageScores
from orchestrator.context import ContextFactory
from orchestrator.deadlines import DeadlinePlan
from orchestrator.funnel import FunnelPorts, run_funnel
from orchestrator.memory_store import MemoryUserStore
from orchestrator.metrics import FunnelMetrics
from orchestrator.stages import RequestRun, ThrottledLog

N_ITEMS = 4  # the tiny tables' catalogue
VERSIONS = {"prerank": 1, "rank": 1}


@dataclass
class Catalogue:
    tables: FeatureTables
    unit_item_embeddings: np.ndarray
    model_versions: dict = field(default_factory=lambda: {"prerank": 1, "rank": 1, "user_tower": 1})

    def history_of(self, user_id: int) -> np.ndarray | None:
        return np.array([-1, 0, 2], np.int64) if user_id < self.tables.n_users else None


class FakeRecall:
    """Recall in item order 0..3 (ann), or the popular [3, 2] for a cold-start user."""

    def __init__(self) -> None:
        self.calls: list[bool] = []  # cold start?

    async def recall(self, user_id: int, history: np.ndarray | None, timestamp: int) -> Candidates:
        self.calls.append(history is None)
        ids = np.array([3, 2], np.int64) if history is None else np.arange(N_ITEMS, dtype=np.int64)
        channel = 1 if history is None else 0
        return Candidates(ids, np.full(len(ids), channel), np.zeros(len(ids), np.float32), ("ann", "popular"))


class FakeScorer:
    """prerank prefers high ids, rank prefers low ids; `fail`/`sleep_s` per scorer (or "two_stage") to make faults."""

    def __init__(self, fail: set[str] = frozenset(), sleep_s: dict[str, float] | None = None) -> None:
        self.fail, self.sleep_s, self.calls = fail, sleep_s or {}, []

    async def score(self, scorer, version, user_id, item_ids, history, timestamp) -> np.ndarray:
        self.calls.append((scorer, version, len(item_ids)))
        await asyncio.sleep(self.sleep_s.get(scorer, 0.0))
        if scorer in self.fail:
            raise ConnectionError(f"{scorer} is down")
        sign = 1.0 if scorer == "prerank" else -1.0
        return (sign * item_ids).astype(np.float32)

    async def score_two_stage(self, versions, user_id, item_ids, history, timestamp, keep) -> TwoStageScores:
        """What the two-stage model computes: the same scores as two calls, in one."""
        self.calls.append(("two_stage", dict(versions), len(item_ids), keep))
        await asyncio.sleep(self.sleep_s.get("two_stage", 0.0))
        if "two_stage" in self.fail:
            raise ConnectionError("two_stage is down")
        prerank = item_ids.astype(np.float32)
        kept = best_first(prerank, keep)
        return TwoStageScores(kept, prerank[kept], -item_ids[kept].astype(np.float32))


class DownStore(MemoryUserStore):
    async def user_state(self, user_id):
        raise ConnectionError("redis down")

    async def record_served(self, user_id, item_ids, sample):
        raise ConnectionError("redis down")


@pytest.fixture
def catalogue(tiny_tables: FeatureTables) -> Catalogue:
    return Catalogue(tiny_tables, np.eye(N_ITEMS, 3, dtype=np.float32))


def ports(catalogue, scorer=None, store=None, recall=None, keep=(3, 2)) -> FunnelPorts:
    return FunnelPorts(
        recall or FakeRecall(), scorer or FakeScorer(), store if store is not None else MemoryUserStore(), catalogue,
        prerank_keep=keep[0], rank_keep=keep[1], sample_log=True,
    )


async def answer(
    p: FunnelPorts, user_id=0, k=2, settings: Settings | None = None, deadline_ms=5_000.0, slack=True, two_stage=frozenset(),
    budgets_ms: dict[str, float] | None = None,
):
    settings = settings or Settings(rerank_chain=[{"name": "truncate"}])
    factory = ContextFactory(settings, VERSIONS, two_stage)
    started = time.perf_counter()
    ctx = factory.build(user_id, k, 1_700_000_000)
    plan = DeadlinePlan.from_ms(deadline_ms, {s: 1.0 for s in settings.stage_budgets_ms} | (budgets_ms or {}), slack)
    return await run_funnel(ctx, p, RequestRun(plan, started, FunnelMetrics(), ctx.arm))


async def test_healthy_answer_is_ranked_by_rank_among_what_prerank_kept(catalogue) -> None:
    scorer, store = FakeScorer(), MemoryUserStore()
    got = await answer(ports(catalogue, scorer, store), k=2)
    # prerank keeps the 3 highest ids (3, 2, 1); rank prefers low ids among them: 1, 2
    assert got.items.item_ids.tolist() == [1, 2] and got.scored_by == "rank" and got.degraded == []
    assert scorer.calls == [("prerank", 1, 4), ("rank", 1, 3)]
    assert store.served[0] == [1, 2] and store.samples[0].item_ids.tolist() == [1, 2]
    assert got.categories.tolist() == catalogue.tables.item_category[[1, 2]].tolist()
    assert set(got.latency_ms) >= {"exposure_filter", "recall", "prerank", "rank", "rerank", "exposure_write", "total"}


async def test_served_items_are_filtered_next_time(catalogue) -> None:
    p = ports(catalogue, keep=(4, 4))
    first = await answer(p, k=2)
    second = await answer(p, k=2)
    assert set(first.items.item_ids.tolist()).isdisjoint(second.items.item_ids.tolist())


async def test_scorer_down_keeps_recall_order_and_says_so(catalogue) -> None:
    got = await answer(ports(catalogue, FakeScorer(fail={"prerank", "rank"})), k=2)
    assert got.items.item_ids.tolist() == [0, 1] and got.scored_by == "none"
    assert [(d.stage, d.reason) for d in got.degraded] == [("prerank", "unavailable"), ("rank", "unavailable")]


async def test_rank_down_serves_prerank_scores(catalogue) -> None:
    got = await answer(ports(catalogue, FakeScorer(fail={"rank"})), k=2)
    assert got.items.item_ids.tolist() == [3, 2] and got.scored_by == "prerank"
    assert [(d.stage, d.reason) for d in got.degraded] == [("rank", "unavailable")]


async def test_stuck_scorer_times_out_without_slack(catalogue) -> None:
    got = await answer(ports(catalogue, FakeScorer(sleep_s={"rank": 0.2})), k=2, slack=False)
    assert got.scored_by == "prerank" and [(d.stage, d.reason) for d in got.degraded] == [("rank", "timeout")]


async def test_slack_lets_a_slow_stage_finish_inside_the_deadline(catalogue) -> None:
    got = await answer(ports(catalogue, FakeScorer(sleep_s={"rank": 0.02})), k=2, deadline_ms=200.0)
    assert got.scored_by == "rank" and got.degraded == []  # 1 ms budget, but 20 ms of slack were free


async def test_store_down_serves_unfiltered_and_unrecorded(catalogue) -> None:
    got = await answer(ports(catalogue, store=DownStore()), k=2)
    assert got.scored_by == "rank" and len(got.items) == 2
    assert [(d.stage, d.reason) for d in got.degraded] == [("exposure_filter", "unavailable"), ("exposure_write", "unavailable")]


async def test_unknown_user_is_a_cold_start_from_popular(catalogue) -> None:
    recall = FakeRecall()
    got = await answer(ports(catalogue, recall=recall), user_id=99, k=2)
    assert got.cold_start and recall.calls == [True] and set(got.items.item_ids.tolist()) == {2, 3}


async def test_live_clicks_end_cold_start(catalogue) -> None:
    store, recall = MemoryUserStore(), FakeRecall()
    store.clicks[99] = [1]
    got = await answer(ports(catalogue, store=store, recall=recall), user_id=99, k=2)
    assert not got.cold_start and recall.calls == [False]


async def test_experiment_arm_pins_versions_and_chain(catalogue) -> None:
    experiments = [{"name": "exp", "arms": [{"name": "pinned", "weight": 1, "model_versions": {"rank": 7},
                                             "rerank_chain": [{"name": "truncate"}]}]}]
    scorer = FakeScorer()
    got = await answer(ports(catalogue, scorer), k=2, settings=Settings(experiments=experiments))
    assert scorer.calls[1] == ("rank", 7, 3)
    assert got.ctx.experiment == "exp" and got.ctx.arm == "pinned" and got.model_versions["rank"] == 7
    assert got.model_versions["user_tower"] == 1


ONE_CALL = {(1, 1)}  # Triton has the two-stage model of VERSIONS


async def test_a_served_pair_is_scored_in_one_call_with_the_two_calls_answer(catalogue) -> None:
    two_calls = await answer(ports(catalogue, FakeScorer()), k=2)
    scorer, store = FakeScorer(), MemoryUserStore()
    got = await answer(ports(catalogue, scorer, store), k=2, two_stage=ONE_CALL)
    assert scorer.calls == [("two_stage", VERSIONS, 4, 3)]
    assert got.items.item_ids.tolist() == two_calls.items.item_ids.tolist() == [1, 2]
    np.testing.assert_array_equal(got.items.scores, two_calls.items.scores)  # rank's scores
    assert got.scored_by == "rank" and got.degraded == [] and store.served[0] == [1, 2]
    assert set(got.latency_ms) >= {"exposure_filter", "recall", "prerank+rank", "rerank", "exposure_write", "total"}


async def test_a_pair_without_a_two_stage_model_makes_two_calls(catalogue) -> None:
    scorer = FakeScorer()
    await answer(ports(catalogue, scorer), k=2, two_stage={(1, 2)})
    assert [c[0] for c in scorer.calls] == ["prerank", "rank"]
    off = FakeScorer()
    await answer(ports(catalogue, off), k=2, settings=Settings(rerank_chain=[{"name": "truncate"}], two_stage=False),
                 two_stage=ONE_CALL)
    assert [c[0] for c in off.calls] == ["prerank", "rank"]


async def test_a_failed_two_stage_call_skips_both_scorers_and_says_so(catalogue) -> None:
    got = await answer(ports(catalogue, FakeScorer(fail={"two_stage"})), k=2, two_stage=ONE_CALL)
    assert got.items.item_ids.tolist() == [0, 1] and got.scored_by == "none"
    assert [(d.stage, d.reason) for d in got.degraded] == [("prerank", "unavailable"), ("rank", "unavailable")]


async def test_a_two_stage_call_gets_both_budgets_and_times_out_past_them(catalogue) -> None:
    """Without slack: pre-rank 1 ms + rank 150 ms; a 50 ms call fits the two together, a 200 ms one does not."""
    budgets = {"rank": 150.0}
    fits = await answer(ports(catalogue, FakeScorer(sleep_s={"two_stage": 0.05})), k=2, slack=False, two_stage=ONE_CALL,
                        budgets_ms=budgets)
    assert fits.scored_by == "rank" and fits.degraded == []
    stuck = await answer(ports(catalogue, FakeScorer(sleep_s={"two_stage": 0.2})), k=2, slack=False, two_stage=ONE_CALL,
                         budgets_ms=budgets)
    assert stuck.scored_by == "none" and [(d.stage, d.reason) for d in stuck.degraded] == [
        ("prerank", "timeout"), ("rank", "timeout"),
    ]


async def test_an_experiment_arm_pinning_a_pair_without_a_model_makes_two_calls(catalogue) -> None:
    experiments = [{"name": "exp", "arms": [{"name": "pinned", "weight": 1, "model_versions": {"rank": 7}}]}]
    scorer = FakeScorer()
    got = await answer(ports(catalogue, scorer), k=2, settings=Settings(experiments=experiments), two_stage=ONE_CALL)
    assert [c[:2] for c in scorer.calls] == [("prerank", 1), ("rank", 7)] and not got.ctx.two_stage
    with_pair = FakeScorer()
    await answer(ports(catalogue, with_pair), k=2, settings=Settings(experiments=experiments), two_stage={(1, 7)})
    assert with_pair.calls == [("two_stage", {"prerank": 1, "rank": 7}, 4, 3)]


def test_degradation_warnings_are_throttled_per_stage_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    warnings = ThrottledLog(interval_s=1.0)
    with caplog.at_level("WARNING", logger="cascade.orchestrator"):
        for t in (0.0, 0.1, 0.2):
            warnings.warn(("rank", "timeout"), "rank degraded (timeout)", t)
        warnings.warn(("prerank", "timeout"), "prerank degraded (timeout)", 0.3)  # another key: its own line
        warnings.warn(("rank", "timeout"), "rank degraded (timeout)", 1.5)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "rank degraded (timeout)", "prerank degraded (timeout)",
        "rank degraded (timeout) (and 2 more like it since 1.5s ago)",
    ]


async def test_a_degraded_answer_is_one_log_line_naming_every_skipped_stage(catalogue, caplog: pytest.LogCaptureFixture) -> None:
    from orchestrator.service import FunnelRunner

    settings = Settings(rerank_chain=[{"name": "truncate"}], two_stage=False)
    runner = FunnelRunner(settings, ports(catalogue, FakeScorer(fail={"prerank", "rank"}), DownStore()), VERSIONS, FunnelMetrics())
    with caplog.at_level("INFO", logger="cascade.orchestrator"):
        degraded = await runner.recommend(0, 2, 1_700_000_000, time.perf_counter())
        healthy = FunnelRunner(settings, ports(catalogue), VERSIONS, FunnelMetrics())
        await healthy.recommend(1, 2, 1_700_000_000, time.perf_counter())
    (line,) = [r for r in caplog.records if getattr(r, "event", None) == "degraded"]  # one for the request, none for the healthy one
    assert line.request_id == degraded.ctx.request_id and line.user_id == 0
    assert [(s["stage"], s["reason"]) for s in line.stages] == [(d.stage, d.reason) for d in degraded.degraded]
    assert {s["stage"] for s in line.stages} >= {"exposure_filter", "prerank", "rank", "exposure_write"}
    assert any("prerank is down" in s["error"] for s in line.stages)
