"""The served funnel against exhaustive scoring, per held-out user.

Funnel (as orchestrator/funnel.py runs it): ANN top `recall_ann_k` and popular top
`recall_popular_k` merged (popular after ANN, with its quota) -> pre-rank keeps `prerank_keep`
-> rank keeps `rank_keep` -> top 10. Exhaustive: one scorer (the teacher, else the student) over the
whole catalogue minus the user's training items -> top 10. Both score through
`cascade.features.assemble_requests`, one user x many items, as Triton's feature assembly does.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from cascade.features import FeatureTables, assemble_requests
from cascade.metrics import ndcg_at_k, recall_at_k
from cascade.recall.merge import merge_channels
from cascade.settings import Settings
from export.eval_retrieval import HeldOutUsers, RankedList
from export.eval_scorers import OnnxModel

TOP_K = 10


@dataclass(frozen=True)
class FunnelModels:
    prerank: OnnxModel
    rank: OnnxModel
    exhaustive: OnnxModel
    exhaustive_name: str  # "teacher", or "rank" when the export wrote no teacher


def score_items(
    model: OnnxModel, tables: FeatureTables, user: int, items: np.ndarray, history: np.ndarray, timestamp: int
) -> np.ndarray:
    features, _ = assemble_requests(tables, [(user, items, history, timestamp)], frozenset(model.inputs))
    return model(features)


def best(items: np.ndarray, scores: np.ndarray, keep: int) -> np.ndarray:
    """The `keep` best items by score, best first (stable on ties, as the orchestrator sorts)."""
    return items[np.argsort(-scores, kind="stable")[:keep]]


def funnel_candidates(ann: RankedList, popular: RankedList, settings: Settings) -> np.ndarray:
    """The merged recall set, with the orchestrator's channel order, limit and popular quota."""
    s = settings
    merged = merge_channels(
        [("ann", ann[0][: s.recall_ann_k], ann[1][: s.recall_ann_k]), ("popular", *popular)],
        limit=s.recall_ann_k + s.recall_popular_k,
        quotas={"popular": s.recall_popular_k},
    )
    return merged.item_ids


def _hits(items: np.ndarray, wanted: np.ndarray | set[int]) -> int:
    return len(set(items.tolist()) & (wanted if isinstance(wanted, set) else set(wanted.tolist())))


def dcg(gains: np.ndarray) -> float:
    return float(np.sum(gains / np.log2(np.arange(len(gains)) + 2.0)))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def evaluate_funnel(
    models: FunnelModels,
    tables: FeatureTables,
    histories: np.ndarray,
    held: HeldOutUsers,
    ann: list[RankedList],
    popular: list[RankedList],
    settings: Settings,
) -> dict:
    """NDCG@10 / Recall@10 of funnel and exhaustive top 10s, their ratio, overlap and time per user."""
    s = settings
    catalogue = np.arange(tables.n_items, dtype=np.int64)
    funnel_top: list[np.ndarray] = []
    exhaustive_top: list[np.ndarray] = []
    candidate_recall, reached, overlap, sizes, graded = [], [], [], [], []
    seconds = {"funnel": 0.0, "exhaustive": 0.0}
    for i in tqdm(range(len(held)), desc="funnel vs exhaustive", unit="user", mininterval=1.0):
        user, ts, history, rel = int(held.users[i]), int(held.timestamps[i]), histories[held.users[i]], held.relevant[i]
        start = time.perf_counter()
        cands = funnel_candidates(ann[i], popular[i], s)
        kept = best(cands, score_items(models.prerank, tables, user, cands, history, ts), max(s.prerank_keep, TOP_K))
        top = best(kept, score_items(models.rank, tables, user, kept, history, ts), max(s.rank_keep, TOP_K))[:TOP_K]
        middle = time.perf_counter()
        unseen = np.setdiff1d(catalogue, held.train_items[i], assume_unique=True)
        gains = score_items(models.exhaustive, tables, user, unseen, history, ts)
        everything = best(unseen, gains, TOP_K)
        gain_of = np.zeros(tables.n_items, np.float64)
        gain_of[unseen] = gains
        graded.append(dcg(gain_of[top]) / dcg(gain_of[everything]))
        seconds["exhaustive"] += time.perf_counter() - middle
        seconds["funnel"] += middle - start
        funnel_top.append(top)
        exhaustive_top.append(everything)
        candidate_recall.append(_hits(cands, rel) / len(rel))
        reached.append(_hits(cands, everything) / TOP_K)
        overlap.append(_hits(top, everything) / TOP_K)
        sizes.append(len(cands))
    result: dict = {"n_users": len(held), "exhaustive_scorer": models.exhaustive_name}
    for name, tops in (("funnel", funnel_top), ("exhaustive", exhaustive_top)):
        result[name] = {
            f"ndcg@{TOP_K}": ndcg_at_k(tops, held.relevant, TOP_K),
            f"recall@{TOP_K}": recall_at_k(tops, held.relevant, TOP_K),
            f"hits@{TOP_K}": sum(_hits(top, rel) for top, rel in zip(tops, held.relevant)),
            "ms_per_user": 1e3 * seconds[name] / max(len(held), 1),
        }
    for metric in (f"ndcg@{TOP_K}", f"recall@{TOP_K}"):
        f, e = result["funnel"][metric], result["exhaustive"][metric]
        result[f"{metric}_ratio"] = f / e if e > 0 else float("nan")
    # NDCG@10 of the funnel's top 10 with the exhaustive scorer's probabilities as graded gains:
    # the exhaustive ranking is the ideal, so this is the funnel relative to exhaustive ranking.
    result[f"graded_ndcg@{TOP_K}"] = _mean(graded)
    result[f"overlap@{TOP_K}"] = _mean(overlap)
    result["candidate_recall"] = _mean(candidate_recall)
    result[f"exhaustive_top{TOP_K}_in_candidates"] = _mean(reached)
    result["mean_candidates"] = _mean(sizes)
    result["sizes"] = {"recall_ann_k": s.recall_ann_k, "recall_popular_k": s.recall_popular_k,
                       "prerank_keep": s.prerank_keep, "rank_keep": s.rank_keep, "top_k": TOP_K}
    return result
