"""The popular-items channel (and the cold-start fallback): training positives, and trending clicks.

Trending lives in the Redis sorted set `POPULAR_KEY` (member = item id). Time decay without any
rewrite: a click at time t adds `decayed_increment(t, tau)` = exp((t - DECAY_EPOCH) / tau) to its
item, so a score read at `now` is worth score * exp(-(now - DECAY_EPOCH) / tau) "clicks of now"
and every click's weight halves every tau * ln 2 seconds. Multiplying by one factor keeps the
order, so ZREVRANGE is already the decayed ranking (and a writer that adds plain 1s still gets a
correct, undecayed ranking). The channel's score is the log of the decayed value (no overflow).
exp() overflows ~700 tau after the epoch (1.9 years with tau = 1 day): move the epoch (and reset
the set) before then.
"""
from __future__ import annotations

import math

import numpy as np

POPULAR_KEY = "cascade:popular"
DECAY_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z


def popular_items(positives: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item ids by positive count (ties by id), with log1p(count) as the channel score."""
    order = np.lexsort((np.arange(len(positives)), -positives))[:k]
    return order.astype(np.int64), np.log1p(positives[order]).astype(np.float32)


def decayed_increment(ts: float, tau_s: float) -> float:
    """What one click at unix time `ts` adds to its item's score in `POPULAR_KEY`."""
    return math.exp((ts - DECAY_EPOCH) / tau_s)


def trending_with_fallback(
    trending_ids: np.ndarray, trending_scores: np.ndarray, now: float, tau_s: float,
    fallback_ids: np.ndarray, fallback_scores: np.ndarray, k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Trending items (best first, as ZREVRANGE gives them), topped up to k by the offline popular list.

    Trending scores become log(score) - (now - epoch) / tau (the log of the decayed value); the
    fallback keeps its own scores. Items listed by both come once, from trending.
    """
    ids = np.asarray(trending_ids, np.int64)
    raw = np.asarray(trending_scores, np.float64)
    keep = (ids >= 0) & (raw > 0)
    ids, raw = ids[keep][:k], raw[keep][:k]
    scores = (np.log(raw) - (now - DECAY_EPOCH) / tau_s).astype(np.float32)
    fallback_ids = np.asarray(fallback_ids, np.int64)
    extra = ~np.isin(fallback_ids, ids)
    room = max(k - len(ids), 0)
    return (
        np.concatenate([ids, fallback_ids[extra][:room]]),
        np.concatenate([scores, np.asarray(fallback_scores, np.float32)[extra][:room]]),
    )


def explore_new_items(new_item_ids: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n items drawn without replacement from those with no training positive, reproducibly per seed.

    Scores are 0: exploration slots carry no relevance of their own.
    """
    new_item_ids = np.asarray(new_item_ids, np.int64)
    n = min(max(n, 0), len(new_item_ids))
    picked = np.random.default_rng(seed).choice(new_item_ids, size=n, replace=False) if n else new_item_ids[:0]
    return picked.astype(np.int64), np.zeros(n, np.float32)
