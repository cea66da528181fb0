"""The served funnel against exhaustive scoring, per held-out user, with the diversity of its answers.

Funnel: the orchestrator's own code in this process (`export.served_funnel`): the served recall
channels and quotas (CASCADE_RECALL_CONFIG), the exposure filter (the user's training items held as
reported shown), pre-rank keeps `prerank_keep`, rank keeps `rank_keep`, the served rerank chain
(CASCADE_RERANK_CHAIN), top 10. Exhaustive: one scorer (the teacher, else the student) over the
whole catalogue minus the user's training items -> top 10. Both score through
`cascade.features.assemble_requests`, one user x many items, as Triton's feature assembly does.

A rerank chain's top 10s are judged by `ChainJudge.figures`: NDCG@10 graded by the exhaustive
scorer's probabilities (the exhaustive top 10 is the ideal), and the lists' diversity
(`cascade.diversity`), the share of lists with MIN_CATEGORIES categories counted only where the
rerank's candidates (rank's `rank_keep` best) held that many. The report sets the served chain
beside rank's own order (no rerank) and REFERENCE_CHAIN, the default before the chain was chosen by
measurement (`export.choose_rerank`), which the served chain's NDCG cost is measured against.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from cascade.diversity import (
    category_coverage,
    distinct_categories,
    intra_list_diversity,
    largest_category_share,
    share_reaching,
)
from cascade.exposure import filter_exposed
from cascade.intervals import mean_interval
from cascade.metrics import ndcg_at_k, recall_at_k
from cascade.settings import Settings
from export.bars import MIN_CATEGORIES
from export.eval_retrieval import HeldOutUsers
from export.eval_scorers import OnnxModel
from export.served_funnel import Chain, Served, ServedFunnel, score_items

TOP_K = 10
RANK_ORDER: Chain = [{"name": "truncate"}]  # asked for rank_keep items: the rank stage's answer, the rerank's input
REFERENCE_CHAIN: Chain = [{"name": "mmr", "lam": 0.7}, {"name": "truncate"}]  # the default before the measured choice


@dataclass(frozen=True)
class FunnelModels:
    prerank: OnnxModel
    rank: OnnxModel
    exhaustive: OnnxModel
    exhaustive_name: str  # "teacher", or "rank" when the export wrote no teacher


def best(items: np.ndarray, scores: np.ndarray, keep: int) -> np.ndarray:
    """The `keep` best items by score, best first (stable on ties, as the orchestrator sorts)."""
    return items[np.argsort(-scores, kind="stable")[:keep]]


def dcg(gains: np.ndarray) -> float:
    return float(np.sum(gains / np.log2(np.arange(len(gains)) + 2.0)))


def _hits(items: np.ndarray, wanted: np.ndarray | set[int]) -> int:
    return len(set(items.tolist()) & (wanted if isinstance(wanted, set) else set(wanted.tolist())))


def _mean(values: list[float] | np.ndarray) -> float:
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


@dataclass(frozen=True)
class Exhaustive:
    """The exhaustive scorer's view of each user: its score of every unseen item (0 for training
    items), the graded gains of NDCG, and its top 10, the ideal."""

    gains: list[np.ndarray]  # float32 [n_items] per user
    top: list[np.ndarray]  # int64 [10] per user
    ms_per_user: float

    @staticmethod
    def score(model: OnnxModel, funnel: ServedFunnel, held: HeldOutUsers) -> Exhaustive:
        resources = funnel.resources
        catalogue = np.arange(resources.tables.n_items, dtype=np.int64)
        gains, top = [], []
        started = time.perf_counter()
        for i in tqdm(range(len(held)), desc="exhaustive scoring", unit="user", mininterval=1.0):
            user = int(held.users[i])
            unseen = np.setdiff1d(catalogue, held.train_items[i], assume_unique=True)
            scores = score_items(model, resources.tables, user, unseen, resources.history_of(user), int(held.timestamps[i]))
            gain = np.zeros(len(catalogue), np.float32)
            gain[unseen] = scores
            gains.append(gain)
            top.append(best(unseen, scores, TOP_K))
        return Exhaustive(gains, top, 1e3 * (time.perf_counter() - started) / max(len(held), 1))

    def graded_ndcg(self, i: int, items: np.ndarray) -> float:
        """User i's list against the exhaustive ranking, graded by the exhaustive scorer's probabilities."""
        return dcg(self.gains[i][items]) / dcg(self.gains[i][self.top[i]])


class ChainJudge:
    """Runs rerank chains through the served funnel for the same users and judges their top 10s."""

    def __init__(self, funnel: ServedFunnel, held: HeldOutUsers, exhaustive: Exhaustive, ranked: list[Served]) -> None:
        self.funnel, self.held, self.exhaustive, self.ranked = funnel, held, exhaustive, ranked
        resources = funnel.resources
        self.categories = resources.tables.item_category
        self.unit = resources.unit_item_embeddings
        self.n_categories = resources.manifest.n_categories
        # categories among each user's rerank candidates: what a chain could put in a top 10
        self.available = np.array([distinct_categories(self.categories[s.answer.items.item_ids]) for s in ranked])

    @staticmethod
    async def of(funnel: ServedFunnel, held: HeldOutUsers, exhaustive: Exhaustive) -> ChainJudge:
        """With each user's rerank candidates (rank's order of `rank_keep`) from one pass of the funnel."""
        ranked = await funnel.answers(RANK_ORDER, held.users, held.timestamps, held.train_items, funnel.settings.rank_keep)
        return ChainJudge(funnel, held, exhaustive, ranked)

    async def answers(self, chain: Chain) -> list[Served]:
        return await self.funnel.answers(chain, self.held.users, self.held.timestamps, self.held.train_items, TOP_K)

    def figures(self, tops: list[np.ndarray]) -> dict:
        """Graded NDCG@10 against the exhaustive ranking and the diversity of the users' top 10s."""
        categories = [self.categories[top] for top in tops]
        distinct = np.array([distinct_categories(c) for c in categories])
        return {
            f"graded_ndcg@{TOP_K}": _mean([self.exhaustive.graded_ndcg(i, top) for i, top in enumerate(tops)]),
            "distinct_categories": _mean(distinct),
            "largest_category_share": _mean([largest_category_share(c) for c in categories]),
            f"lists_with_{MIN_CATEGORIES}_categories": share_reaching(distinct, self.available, MIN_CATEGORIES),
            "intra_list_diversity": _mean([intra_list_diversity(self.unit[top]) for top in tops]),
            "category_coverage": category_coverage(categories, self.n_categories),
            "short_lists": _mean([len(top) < TOP_K for top in tops]),  # filters (caps) may leave fewer than 10
        }

    def rank_order_tops(self) -> list[np.ndarray]:
        """Rank's own top 10s, no rerank."""
        return [s.answer.items.item_ids[:TOP_K] for s in self.ranked]


def _served_candidates(served: Served, seen: np.ndarray) -> np.ndarray:
    """The candidates the funnel scored: the recall stage's merge after the exposure filter."""
    merged = served.plan.merge(served.channels).item_ids
    return merged[filter_exposed(merged, seen, TOP_K, seen)]


async def _evaluate(models: FunnelModels, held: HeldOutUsers, settings: Settings, resamples: int) -> dict:
    funnel = ServedFunnel(settings, models.prerank, models.rank)
    try:
        exhaustive = Exhaustive.score(models.exhaustive, funnel, held)
        judge = await ChainJudge.of(funnel, held, exhaustive)
        served = await judge.answers(settings.rerank_chain)
        reference = served if settings.rerank_chain == REFERENCE_CHAIN else await judge.answers(REFERENCE_CHAIN)
    finally:
        await funnel.close()
    funnel_top = [s.answer.items.item_ids for s in served]
    candidates = [_served_candidates(s, seen) for s, seen in zip(served, held.train_items)]
    result: dict = {"n_users": len(held), "exhaustive_scorer": models.exhaustive_name, "rerank_chain": settings.rerank_chain}
    ms = {"funnel": _mean([s.answer.latency_ms["total"] for s in served]), "exhaustive": exhaustive.ms_per_user}
    for name, tops in (("funnel", funnel_top), ("exhaustive", exhaustive.top)):
        result[name] = {
            f"ndcg@{TOP_K}": ndcg_at_k(tops, held.relevant, TOP_K),
            f"recall@{TOP_K}": recall_at_k(tops, held.relevant, TOP_K),
            f"hits@{TOP_K}": sum(_hits(top, rel) for top, rel in zip(tops, held.relevant)),
            "ms_per_user": ms[name],
        }
    for metric in (f"ndcg@{TOP_K}", f"recall@{TOP_K}"):
        f, e = result["funnel"][metric], result["exhaustive"][metric]
        result[f"{metric}_ratio"] = f / e if e > 0 else float("nan")
    graded = mean_interval(np.array([exhaustive.graded_ndcg(i, top) for i, top in enumerate(funnel_top)]),
                           resamples, settings.seed)  # users resampled
    result[f"graded_ndcg@{TOP_K}"] = graded.point
    result[f"graded_ndcg@{TOP_K}_interval"] = graded.as_dict()
    result[f"overlap@{TOP_K}"] = _mean([_hits(t, e) / TOP_K for t, e in zip(funnel_top, exhaustive.top)])
    result["candidate_recall"] = _mean([_hits(c, rel) / len(rel) for c, rel in zip(candidates, held.relevant)])
    result[f"exhaustive_top{TOP_K}_in_candidates"] = _mean([_hits(c, e) / TOP_K for c, e in zip(candidates, exhaustive.top)])
    result["mean_candidates"] = _mean([len(c) for c in candidates])
    result["chains"] = {
        "served": judge.figures(funnel_top),
        "reference": judge.figures([s.answer.items.item_ids for s in reference]),
        "rank_order": judge.figures(judge.rank_order_tops()),
        "exhaustive": judge.figures(exhaustive.top),
    }
    result["reference_chain"] = REFERENCE_CHAIN
    result["lists_allowing_diversity"] = int(np.sum(judge.available >= MIN_CATEGORIES))
    result["sizes"] = {"prerank_keep": settings.prerank_keep, "rank_keep": settings.rank_keep, "top_k": TOP_K,
                       "recall_quotas": served[0].plan.quotas if served else {}}
    return result


def evaluate_funnel(models: FunnelModels, held: HeldOutUsers, settings: Settings, resamples: int) -> dict:
    """The served funnel's top 10s against exhaustive ranking and held-out positives, the diversity
    of its lists and of the reference chain's; the graded NDCG@10 with its interval over `resamples` draws of users."""
    return asyncio.run(_evaluate(models, held, settings, resamples))
