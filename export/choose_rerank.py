"""`python -m export.choose_rerank`: candidate rerank chains through the served funnel, on the same users.

Each chain runs through the orchestrator's funnel in this process (`export.served_funnel`) for the
held-out users `python -m export.evaluate` judges the funnel on, and its top 10s are judged as the
report judges the served chain (`export.eval_funnel.ChainJudge`): graded NDCG@10 against the
exhaustive teacher ranking and its cost against REFERENCE_CHAIN (the default before this choice),
mean categories, the share of lists holding MIN_CATEGORIES categories where the rerank's candidates
held that many, intra-list diversity. The pick (`pick`): of the chains that give every such list
MIN_CATEGORIES categories and every list 10 items, at most MAX_NDCG_COST below the reference's
NDCG, the one with the best NDCG. Prints the table (markdown) and the pick; --out keeps them as JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import numpy as np

from cascade.artifacts import ArtifactPaths
from cascade.features import FeatureTables
from cascade.settings import Settings, settings_or_report
from export.bars import MAX_NDCG_COST, MIN_CATEGORIES
from export.datasets import load_dataset, split_log
from export.eval_funnel import REFERENCE_CHAIN, RANK_ORDER, TOP_K, ChainJudge, Exhaustive
from export.eval_retrieval import held_out_users, sample_users
from export.eval_scorers import OnnxModel
from export.evaluate import SMALL_CATALOGUE, EvalOptions, _check_same_data
from export.served_funnel import Chain, ServedFunnel

NDCG = f"graded_ndcg@{TOP_K}"
DIVERSE = f"lists_with_{MIN_CATEGORIES}_categories"

CANDIDATES: dict[str, Chain] = {
    "rank order (no rerank)": RANK_ORDER,
    "mmr 0.7 (reference)": REFERENCE_CHAIN,
    "mmr 0.6": [{"name": "mmr", "lam": 0.6}, {"name": "truncate"}],
    "mmr 0.5": [{"name": "mmr", "lam": 0.5}, {"name": "truncate"}],
    "mmr 0.3": [{"name": "mmr", "lam": 0.3}, {"name": "truncate"}],
    "mmr 0.7, category weight 1": [{"name": "mmr", "lam": 0.7, "category_weight": 1.0}, {"name": "truncate"}],
    "mmr 0.5, category weight 1": [{"name": "mmr", "lam": 0.5, "category_weight": 1.0}, {"name": "truncate"}],
    "dpp 0.7": [{"name": "dpp", "theta": 0.7}, {"name": "truncate"}],
    "dpp 0.6": [{"name": "dpp", "theta": 0.6}, {"name": "truncate"}],
    "dpp 0.5": [{"name": "dpp", "theta": 0.5}, {"name": "truncate"}],
    "dpp 0.5, category weight 1": [{"name": "dpp", "theta": 0.5, "category_weight": 1.0}, {"name": "truncate"}],
    "cap 3": [{"name": "cap_per_category", "limit": 3}, {"name": "truncate"}],
    "cap 2": [{"name": "cap_per_category", "limit": 2}, {"name": "truncate"}],
    "scatter 3": [{"name": "scatter", "window": 3}, {"name": "truncate"}],
    "scatter 4": [{"name": "scatter", "window": 4}, {"name": "truncate"}],
    "scatter 5": [{"name": "scatter", "window": 5}, {"name": "truncate"}],
    "mmr 0.7 → scatter 4": [{"name": "mmr", "lam": 0.7}, {"name": "scatter", "window": 4}, {"name": "truncate"}],
    "cap 3 → mmr 0.7": [{"name": "cap_per_category", "limit": 3}, {"name": "mmr", "lam": 0.7}, {"name": "truncate"}],
    "cover 4": [{"name": "cover_categories", "min_categories": 4}, {"name": "truncate"}],
    "cover 5": [{"name": "cover_categories", "min_categories": 5}, {"name": "truncate"}],
    "mmr 0.7 → cover 4": [{"name": "mmr", "lam": 0.7}, {"name": "cover_categories", "min_categories": 4}, {"name": "truncate"}],
}


def pick(rows: dict[str, dict]) -> str | None:
    """The best-NDCG chain of those that hold MIN_CATEGORIES categories wherever the candidates allow,
    never answer short, and cost at most MAX_NDCG_COST of the reference's NDCG; None if none does."""
    qualified = [name for name, r in rows.items()
                 if r[DIVERSE] >= 1.0 and r["short_lists"] == 0.0 and r["ndcg_cost"] <= MAX_NDCG_COST]
    return max(qualified, key=lambda name: (rows[name][NDCG], rows[name]["distinct_categories"]), default=None)


def table(rows: dict[str, dict], allowing: int) -> str:
    head = ["chain", "NDCG@10 vs exhaustive", "cost vs reference", "mean categories",
            f"≥ {MIN_CATEGORIES} categories (of {allowing} lists that allow)", "largest category share",
            "intra-list diversity", "short lists"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        lines.append(f"| {name} | {r[NDCG]:.4f} | {r['ndcg_cost']:+.2%} | {r['distinct_categories']:.2f} | {r[DIVERSE]:.1%} | "
                     f"{r['largest_category_share']:.3f} | {r['intra_list_diversity']:.4f} | {r['short_lists']:.1%} |")
    return "\n".join(lines)


async def _measure(judge: ChainJudge, chains: dict[str, Chain]) -> dict[str, dict]:
    rows = {}
    for name, chain in chains.items():
        rows[name] = judge.figures([s.answer.items.item_ids for s in await judge.answers(chain)])
    reference = rows["mmr 0.7 (reference)"][NDCG]
    for r in rows.values():
        r["ndcg_cost"] = 1.0 - r[NDCG] / reference
    return rows


async def measure(settings: Settings, n_users: int | None, threads: int) -> tuple[dict[str, dict], int]:
    """Every candidate chain's figures on the evaluation's funnel users, and how many of their lists
    could hold MIN_CATEGORIES categories."""
    paths = ArtifactPaths(settings.artifacts_dir)
    tables = FeatureTables.load(paths.tables)
    dataset = load_dataset(settings)
    split = split_log(dataset.interactions, settings)
    _check_same_data(paths, tables, dataset, split.train)
    held = sample_users(held_out_users(dataset.interactions, split.train, dataset.n_users), EvalOptions().retrieval_users,
                        settings.seed)
    held = held.take(np.arange(min(n_users or (200 if dataset.n_items <= SMALL_CATALOGUE else 100), len(held))))
    exhaustive_name = "teacher" if paths.onnx("teacher").exists() else "rank"
    prerank, rank = (OnnxModel(paths.onnx(name), threads=threads) for name in ("prerank", "rank"))
    funnel = ServedFunnel(settings, prerank, rank)
    try:
        exhaustive = Exhaustive.score(OnnxModel(paths.onnx(exhaustive_name), threads=threads), funnel, held)
        judge = await ChainJudge.of(funnel, held, exhaustive)
        rows = await _measure(judge, CANDIDATES)
    finally:
        await funnel.close()
    return rows, int(np.sum(judge.available >= MIN_CATEGORIES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.choose_rerank", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, help="funnel users (default as export.evaluate: 200 up to 5k items, else 100)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--out", type=Path, help="also write the figures and the pick here (JSON)")
    args = parser.parse_args(argv)
    settings = settings_or_report()
    if settings is None:
        return 2
    rows, allowing = asyncio.run(measure(settings, args.users, args.threads))
    chosen = pick(rows)
    print(table(rows, allowing))
    print(f"pick: {chosen}: {json.dumps(CANDIDATES[chosen]) if chosen else 'no chain meets the bar'}")
    if args.out:
        args.out.write_text(json.dumps({"dataset": settings.data_source, "lists_allowing": allowing, "rows": rows,
                                        "chains": CANDIDATES, "pick": chosen}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
