"""The funnel for one request: exposure read -> recall -> exposure filter -> pre-rank -> rank -> rerank
-> exposure write, over the narrow interfaces of `orchestrator.ports`. Where Triton has the two-stage
model of the request's scorer versions (`RequestContext.two_stage`), pre-rank and rank are one call.

Every awaiting stage runs within its allowance (`orchestrator.stages`). A stage that fails or runs
out of time (Triton down or stuck, Redis unreachable) is skipped: the previous order stands and the
answer names the stage and the reason in `degraded`. With the scorer down the answer is recall's
order; with the store down it is unfiltered and not recorded. Load is not a fault: the door
(`orchestrator.admission`) keeps the work in flight small enough that stages finish in time.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from cascade.exposure import filter_exposed
from cascade.features import assemble_requests
from cascade.history import merge_live_history
from cascade.recall.merge import Candidates
from cascade.rerank.base import RerankInput, apply_chain
from cascade.samples import ServedSample
from cascade.ordering import best_first
from cascade.triton.layout import TWO_STAGE, pipeline_name
from cascade.triton.two_stage import TwoStageScores
from orchestrator.context import RequestContext
from orchestrator.ports import Catalogue, Recall, Scorer, UserState, UserStore
from orchestrator.stages import Degradation, RequestRun, reason_for

NO_CLICKS = np.empty(0, np.int64)
T = TypeVar("T")


@dataclass(frozen=True)
class FunnelPorts:
    recall: Recall
    scorer: Scorer
    store: UserStore
    catalogue: Catalogue
    prerank_keep: int
    rank_keep: int
    sample_log: bool


@dataclass(frozen=True, slots=True)
class Answer:
    ctx: RequestContext
    cold_start: bool
    items: Candidates  # the served items, in order, with the scores they were served with
    categories: np.ndarray  # int64 [k]
    model_versions: Mapping[str, int]
    scored_by: str  # "rank", "prerank" (rank skipped) or "none" (both skipped: recall's order)
    latency_ms: Mapping[str, float]
    degraded: list[Degradation]


async def run_funnel(ctx: RequestContext, ports: FunnelPorts, run: RequestRun) -> Answer:
    catalogue = ports.catalogue
    state: UserState | None = await run.guarded(("exposure_filter",), lambda: ports.store.user_state(ctx.user_id), None)
    known = catalogue.history_of(ctx.user_id)
    clicks = state.clicks if state is not None else NO_CLICKS
    # The exported sequence, then the live clicks; a cold-start user with clicks is recalled from them.
    history = merge_live_history(known, clicks, catalogue.tables.config.history_len)
    cold_start = known is None and not len(clicks)

    cands = await _recall(run, ports.recall, ctx, None if cold_start else history, catalogue.tables.n_items)
    cands = _filter_exposed(run, state, cands, ctx.k)
    keeps = max(ports.prerank_keep, ctx.k), max(ports.rank_keep, ctx.k)
    if ctx.two_stage:
        cands, prescored, ranked = await _score_two_stage(run, ports.scorer, ctx, cands, history, keeps)
    else:
        cands, prescored = await _score(run, ports.scorer, "prerank", ctx, cands, history, keeps[0])
        cands, ranked = await _score(run, ports.scorer, "rank", ctx, cands, history, keeps[1])
    final = _rerank(run, ctx, catalogue, cands, scored=ranked or prescored)
    scored_by = "rank" if ranked else "prerank" if prescored else "none"
    sample = _sample(ctx, catalogue, history, final, scored_by) if ports.sample_log else None
    await run.guarded(("exposure_write",), lambda: ports.store.record_served(ctx.user_id, final.item_ids, sample), None)
    return Answer(
        ctx, cold_start, final, catalogue.tables.item_category[final.item_ids], {**catalogue.model_versions, **ctx.versions},
        scored_by, run.total_ms(time.perf_counter()), run.degraded,
    )


async def _recall(
    run: RequestRun, recall: Recall, ctx: RequestContext, history: np.ndarray | None, n_items: int
) -> Candidates:
    """Recall is timed but never cut short: every later stage works on what it finds."""
    with run.stage("recall"):
        try:
            cands = await recall.recall(ctx.user_id, history, ctx.timestamp)
        except Exception as err:  # the ANN channel failed: the cold-start channels (popular) answer
            run.degrade("recall", err)
            cands = await recall.recall(ctx.user_id, None, ctx.timestamp)
    per_channel = np.bincount(cands.channels, minlength=len(cands.channel_names))
    run.metrics.count_recall(dict(zip(cands.channel_names, per_channel.tolist())), run.arm)
    run.count("recall", n_items, len(cands))
    return cands


def _filter_exposed(run: RequestRun, state: UserState | None, cands: Candidates, k: int) -> Candidates:
    out = cands
    if state is not None:
        out = cands.take(filter_exposed(cands.item_ids, state.exposed, min_keep=k, seen=state.seen))
        run.metrics.count_exposure_filter(len(cands), len(out), run.arm)
    run.count("exposure_filter", len(cands), len(out))
    return out


async def _timed(run: RequestRun, model: str, version: int | str, call: Awaitable[T]) -> T:
    """`call` (one Triton call), observed under `model` and `version` with its failure reason if any."""
    started, failure = time.perf_counter(), None
    try:
        return await call
    except BaseException as err:
        failure = reason_for(err)
        raise
    finally:
        run.metrics.observe_triton(model, version, run.arm, time.perf_counter() - started, failure)


async def _score(
    run: RequestRun, scorer: Scorer, name: str, ctx: RequestContext, cands: Candidates, history: np.ndarray, keep: int,
) -> tuple[Candidates, bool]:
    """Score with `name` at the request's version and keep the best `keep`; on failure or timeout, the
    first `keep` as they stand. Also says whether the candidates were scored."""
    version = ctx.versions[name]

    def call() -> Awaitable[np.ndarray]:
        scoring = scorer.score(name, version, ctx.user_id, cands.item_ids, history, ctx.timestamp)
        return _timed(run, pipeline_name(name), version, scoring)

    scores = await run.guarded((name,), call, None)
    out = _first(cands, keep) if scores is None else _best(cands, scores, keep)
    run.count(name, len(cands), len(out))
    return out, scores is not None


async def _score_two_stage(
    run: RequestRun, scorer: Scorer, ctx: RequestContext, cands: Candidates, history: np.ndarray, keeps: tuple[int, int],
) -> tuple[Candidates, bool, bool]:
    """Pre-rank, keep the best `keeps[0]`, rank, keep the best `keeps[1]`: in one Triton call, under the
    two stages' budgets together. On failure or timeout both are skipped (each named in `degraded`):
    the first `keeps[1]` as recall ordered them."""
    p, r = ctx.versions["prerank"], ctx.versions["rank"]

    def call() -> Awaitable[TwoStageScores]:
        scoring = scorer.score_two_stage(ctx.versions, ctx.user_id, cands.item_ids, history, ctx.timestamp, keeps[0])
        return _timed(run, TWO_STAGE, f"p{p}_r{r}", scoring)

    scores = await run.guarded(("prerank", "rank"), call, None)
    if scores is None:
        prescored = _first(cands, keeps[0])
        out = _first(prescored, keeps[1])
    else:
        prescored = _with_scores(cands.take(scores.kept), scores.prerank)
        out = _best(prescored, scores.rank, keeps[1])
    run.count("prerank", len(cands), len(prescored))
    run.count("rank", len(prescored), len(out))
    return out, scores is not None, scores is not None


def _first(cands: Candidates, keep: int) -> Candidates:
    """The first `keep` as they stand (a skipped stage's fallback)."""
    return cands.take(np.arange(min(keep, len(cands))))


def _with_scores(cands: Candidates, scores: np.ndarray) -> Candidates:
    return Candidates(cands.item_ids, cands.channels, scores.astype(np.float32, copy=False), cands.channel_names)


def _best(cands: Candidates, scores: np.ndarray, keep: int) -> Candidates:
    """The best `keep` of `cands` by `scores` (`cascade.ordering.best_first`), carrying those scores."""
    return _with_scores(cands, scores).take(best_first(scores, keep))


def _rerank(run: RequestRun, ctx: RequestContext, catalogue: Catalogue, cands: Candidates, scored: bool) -> Candidates:
    # Unscored candidates are in recall's order, their scores from different channels: rerank by position.
    relevance = cands.scores if scored else np.linspace(1.0, 0.0, len(cands), dtype=np.float32)
    with run.stage("rerank"):
        try:
            ids = cands.item_ids
            batch = RerankInput(
                ids, relevance, catalogue.tables.item_category[ids], None, unit_embeddings=catalogue.unit_item_embeddings[ids]
            )
            final = cands.take(apply_chain(ctx.chain, batch, ctx.k))
        except Exception as err:  # a faulty operator: the order stands, cut at k
            run.degrade("rerank", err)
            final = _first(cands, ctx.k)
    run.count("rerank", len(cands), len(final))
    return final


def _sample(ctx: RequestContext, catalogue: Catalogue, history: np.ndarray, final: Candidates, scored_by: str) -> ServedSample:
    """The answer's served sample: its features assembled by the code the scorers ran, from the inputs
    they received (`cascade.samples`)."""
    features, _ = assemble_requests(catalogue.tables, [(ctx.user_id, final.item_ids, history, ctx.timestamp)])
    return ServedSample(
        ctx.request_id, ctx.user_id, ctx.timestamp, scored_by, dict(ctx.versions), ctx.experiment_label, ctx.arm,
        final.item_ids, final.scores, features,
    )
