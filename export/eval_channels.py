"""The served recall channels on held-out users: each channel alone, and their merge at an equal budget.

Every list is what `orchestrator.recall.RecallChannels` gave the funnel (`export.served_funnel`),
with the user's training items taken out, as the exposure filter takes them out of the funnel.
A single channel's Recall@K is its own top K. The multi-channel figure at a budget of K is the
served merge (`cascade.recall.merge`, the channel file's priority order) with every quota scaled
to K in the served proportions: the served quotas add up to well over K (1,000 ANN + 200 + 200),
and the first K of the full merge would be ANN's top K alone.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cascade.metrics import recall_at_k
from cascade.recall.merge import merge_channels
from export.eval_retrieval import drop_seen
from orchestrator.recall import Channel, RecallPlan

CHANNEL_KS = (100, 200)
MULTI_CHANNEL_BUDGET = 200


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


def channel_figures(
    recorded: Sequence[tuple[RecallPlan, list[Channel]]], train_items: Sequence[np.ndarray], relevant: list[set[int]],
) -> dict:
    """Recall@K (K in CHANNEL_KS) of each served channel alone, and Recall@MULTI_CHANNEL_BUDGET of the
    served channels merged with scaled quotas; `recorded` holds each user's plan and channel lists."""
    unseen = [_unseen(channels, seen) for (_, channels), seen in zip(recorded, train_items)]
    names = [name for name, _, _ in unseen[0]] if unseen else []
    single = {
        name: {f"recall@{k}": recall_at_k([lists[i][1] for lists in unseen], relevant, k) for k in CHANNEL_KS}
        for i, name in enumerate(names)
    }
    quotas = scaled_quotas(recorded[0][0].quotas, MULTI_CHANNEL_BUDGET) if recorded else {}
    merged = [merge_channels(lists, MULTI_CHANNEL_BUDGET, quotas).item_ids for lists in unseen]
    return {
        "channels": single,
        "multi_channel": {
            f"recall@{MULTI_CHANNEL_BUDGET}": recall_at_k(merged, relevant, MULTI_CHANNEL_BUDGET), "quotas": quotas,
        },
    }
