"""The served recall channels on held-out users: each channel alone, and their merge at an equal budget.

Every list is what `orchestrator.recall.RecallChannels` gives the funnel for the user's request,
with the user's training items taken out, as the exposure filter takes them out of the funnel. The
channels are judged on all the retrieval users (no scoring is needed, so they are not held to the
funnel's smaller sample), with bootstrap intervals over users for the ratios the bars read.

A single channel's Recall@K is its own top K. The multi-channel figure at a budget of K is the
served merge (`cascade.recall.merge`, the channel file's priority order) with every quota scaled
to K in the served proportions: the served quotas add up to well over K (1,000 ANN + 200 + 200),
and the first K of the full merge would be ANN's top K alone. Beside it, the best split of the same
budget in hindsight (`best_quota_split`): the ceiling any quotas reach with these channels' lists;
and each user's best single channel in hindsight (the routing ceiling): the most any router sending
each user to one channel could reach. On synthetic data, also the oracle list (`export.eval_oracle`):
what no list of the budget's length can expect to beat.
"""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from cascade.intervals import ratio_of_means
from cascade.metrics import recall_per_user
from cascade.recall.merge import merge_channels
from cascade.settings import Settings
from export.eval_retrieval import HeldOutUsers, drop_seen
from orchestrator.recall import Channel, RecallPlan
from orchestrator.resources import Resources

CHANNEL_KS = (100, 200)
MULTI_CHANNEL_BUDGET = 200
SPLIT_STEP = 20  # the quota grid of the best split in hindsight
ANN_K = 100  # the ANN bar compares Recall@100

Recorded = tuple[RecallPlan, list[Channel]]  # a user's recall plan and each channel's own list


def scaled_quotas(quotas: dict[str, int], budget: int) -> dict[str, int]:
    """`quotas` scaled to add up to `budget` (or less, where they add up to less) in the same
    proportions, rounded by largest remainder so that they add up exactly."""
    total = sum(quotas.values())
    if total <= budget:
        return dict(quotas)
    exact = {name: quota * budget / total for name, quota in quotas.items()}
    out = {name: int(share) for name, share in exact.items()}
    by_remainder = sorted(exact, key=lambda name: out[name] - exact[name])  # largest remainder first
    for name in by_remainder[: budget - sum(out.values())]:
        out[name] += 1
    return out


def _unseen(channels: list[Channel], seen: np.ndarray) -> list[Channel]:
    """Each channel's whole list without the user's training items."""
    return [(name, *drop_seen(ids, scores, seen, len(ids))) for name, ids, scores in channels]


def _merged_recall(unseen: list[list[Channel]], relevant: list[set[int]], quotas: dict[str, int], budget: int) -> np.ndarray:
    merged = [merge_channels(lists, budget, quotas).item_ids for lists in unseen]
    return recall_per_user(merged, relevant, budget)


def best_quota_split(
    unseen: list[list[Channel]], relevant: list[set[int]], budget: int, step: int = SPLIT_STEP,
) -> tuple[dict[str, int], np.ndarray]:
    """The split of `budget` over the channels (quotas in multiples of `step`, merged in priority
    order) whose merge recalls most, and its per-user Recall@budget. Chosen on these very users: a
    ceiling for any quotas over these lists, not a figure serving would reach."""
    names = [name for name, _, _ in unseen[0]] if unseen else []
    best: tuple[float, dict[str, int], np.ndarray] | None = None
    for head in itertools.product(range(0, budget + 1, step), repeat=max(len(names) - 1, 0)):
        if sum(head) > budget or not names:
            continue
        quotas = dict(zip(names, [*head, budget - sum(head)]))
        per_user = _merged_recall(unseen, relevant, quotas, budget)
        if best is None or np.nanmean(per_user) > best[0]:
            best = (float(np.nanmean(per_user)), quotas, per_user)
    return (best[1], best[2]) if best is not None else ({}, np.full(len(relevant), np.nan))


def _interval(a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> dict[str, float]:
    return ratio_of_means(a, b, resamples, seed).as_dict()


def channel_figures(
    recorded: Sequence[Recorded], train_items: Sequence[np.ndarray], relevant: list[set[int]],
    resamples: int = 200, seed: int = 0, oracle: Sequence[np.ndarray] | None = None,
) -> dict:
    """Recall@K (K in CHANNEL_KS) of each served channel alone, Recall@MULTI_CHANNEL_BUDGET of the
    served channels merged with scaled quotas and with the best split in hindsight, each user's best
    channel's Recall@MULTI_CHANNEL_BUDGET (the routing ceiling), and the ratios
    the bars read with their bootstrap intervals (users resampled): the merge over each channel at
    the budget, ANN over each other channel at ANN_K. With `oracle` lists (one per user, training
    items excluded), their Recall@MULTI_CHANNEL_BUDGET and its ratio over each channel too."""
    unseen = [_unseen(channels, seen) for (_, channels), seen in zip(recorded, train_items)]
    names = [name for name, _, _ in unseen[0]] if unseen else []
    budget = MULTI_CHANNEL_BUDGET
    per_user = {
        name: {k: recall_per_user([lists[i][1] for lists in unseen], relevant, k) for k in {*CHANNEL_KS, budget, ANN_K}}
        for i, name in enumerate(names)
    }
    quotas = scaled_quotas(recorded[0][0].quotas, budget) if recorded else {}
    multi = _merged_recall(unseen, relevant, quotas, budget)
    split, best_split = best_quota_split(unseen, relevant, budget)
    # each user's best single channel (NaN only for a user with no relevant item, NaN in every channel)
    routed = np.max([r[budget] for r in per_user.values()], axis=0) if per_user else np.full(len(unseen), np.nan)
    ratios = {f"multi_channel/{name}": _interval(multi, r[budget], resamples, seed) for name, r in per_user.items()}
    if "ann" in per_user:
        ratios |= {f"ann/{name}": _interval(per_user["ann"][ANN_K], r[ANN_K], resamples, seed)
                   for name, r in per_user.items() if name != "ann"}
    figures = {}
    if oracle is not None:
        bound = recall_per_user(list(oracle), relevant, budget)
        figures["oracle"] = {f"recall@{budget}": float(np.nanmean(bound))}
        ratios |= {f"oracle/{name}": _interval(bound, r[budget], resamples, seed) for name, r in per_user.items()}
    return figures | {
        "n_users": len(unseen),
        "users_without_history": sum(len(seen) == 0 for seen in train_items),
        "channels": {name: {f"recall@{k}": float(np.nanmean(r[k])) for k in CHANNEL_KS} for name, r in per_user.items()},
        "multi_channel": {f"recall@{budget}": float(np.nanmean(multi)), "quotas": quotas},
        "best_split": {f"recall@{budget}": float(np.nanmean(best_split)), "quotas": split, "step": SPLIT_STEP},
        "routing_ceiling": {f"recall@{budget}": float(np.nanmean(routed))},
        "ratios": ratios,
    }


async def _record(settings: Settings, held: HeldOutUsers) -> list[Recorded]:
    resources = Resources.load(settings, trending=False)
    try:
        return [
            await resources.channels.channel_lists(user, resources.history_of(user), timestamp)
            for user, timestamp in tqdm(zip(held.users.tolist(), held.timestamps.tolist()), total=len(held),
                                        desc="recall channels", unit="user", mininterval=1.0)
        ]
    finally:
        await resources.channels.close()


def evaluate_channels(
    settings: Settings, held: HeldOutUsers, resamples: int = 200, seed: int = 0, oracle: Sequence[np.ndarray] | None = None,
) -> dict:
    """`channel_figures` of the served recall channels (CASCADE_RECALL_CONFIG, the exported popularity
    list as the trending list) for each held-out user at its first held-out timestamp."""
    recorded = asyncio.run(_record(settings, held))
    return channel_figures(recorded, held.train_items, held.relevant, resamples, seed, oracle)
