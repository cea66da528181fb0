"""The popular-items channel (and the cold-start fallback): training positives, and trending clicks.

Trending lives in a Redis sorted set (member = item id; `orchestrator.clients.keys.POPULAR`),
relative to an epoch stored beside it (unix seconds; absent: `DECAY_EPOCH`). A click at time t adds
`decayed_increment(t, tau, epoch)` = exp((t - epoch) / tau) to its item, so a score read at `now`
is worth score * exp(-(now - epoch) / tau) "clicks of now" and every click's weight halves every
tau * ln 2 seconds. Multiplying by one factor keeps the order, so ZREVRANGE is already the decayed
ranking. The channel's score is the log of the decayed value (no overflow).

Rolling epoch: exp() would overflow ~709 tau after a fixed epoch (1.9 years with tau = 1 day), and
one click dated far ahead would own the set. So the writer (`orchestrator.clients.feedback`, in one
Lua step) clamps click times to its clock, weighs a batch's clicks relative to its latest one
(`batch_reference`, `relative_increment`: each weight in (0, 1]) and, once that reference is more
than `MAX_EXPONENT` tau past the epoch, multiplies every stored score by exp(-(reference - epoch) / tau)
and makes the reference the epoch. Each click then adds weight * exp((reference - epoch) / tau) =
decayed_increment(min(t, now), tau, epoch) <= exp(MAX_EXPONENT): sums stay ~1e47 clicks from overflow.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

DECAY_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z: the epoch until the first roll
MAX_EXPONENT = 600.0  # exp(600) ~ 3.8e260: the epoch rolls before an increment passes it


def popular_items(positives: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item ids by positive count (ties by id), with log1p(count) as the channel score."""
    order = np.lexsort((np.arange(len(positives)), -positives))[:k]
    return order.astype(np.int64), np.log1p(positives[order]).astype(np.float32)


def decayed_increment(ts: float, tau_s: float, epoch: float = DECAY_EPOCH) -> float:
    """What one click at unix time `ts` adds to its item's trending score under `epoch`
    (overflows for ts past epoch + ~709 tau: the writer rolls the epoch long before)."""
    return math.exp((ts - epoch) / tau_s)


def batch_reference(click_times: Iterable[float], now: float) -> float:
    """The time a batch's click weights are relative to: its latest click, clamped to `now`
    (`now` for a batch without clicks)."""
    return max((min(float(ts), now) for ts in click_times), default=now)


def relative_increment(ts: float, reference: float, now: float, tau_s: float) -> float:
    """A click's weight relative to `reference` (in (0, 1] for clicks up to it; 0 once it underflows).

    A click dated after `now` counts as a click at `now`: a future date must not outrank every real click.
    """
    return math.exp((min(float(ts), now) - reference) / tau_s)


def trending_with_fallback(
    trending_ids: np.ndarray, trending_scores: np.ndarray, now: float, tau_s: float,
    fallback_ids: np.ndarray, fallback_scores: np.ndarray, k: int, epoch: float = DECAY_EPOCH,
) -> tuple[np.ndarray, np.ndarray]:
    """Trending items (best first, as ZREVRANGE gives them), topped up to k by the offline popular list.

    Trending scores become log(score) - (now - epoch) / tau (the log of the decayed value; `epoch`
    as read with the scores, `DECAY_EPOCH` when absent); the fallback keeps its own scores. Items listed by both come once,
    from trending.
    """
    ids = np.asarray(trending_ids, np.int64)
    raw = np.asarray(trending_scores, np.float64)
    keep = (ids >= 0) & (raw > 0)
    ids, raw = ids[keep][:k], raw[keep][:k]
    scores = (np.log(raw) - (now - epoch) / tau_s).astype(np.float32)
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
