"""Exposure rules: drop candidates the user has already been shown, without starving the funnel.

The orchestrator keeps each user's shown items in a Redis sorted set (member = item id, score = unix
seconds when shown); these functions decide what to do with what it reads back.
"""
from __future__ import annotations

import numpy as np


def unexposed_mask(item_ids: np.ndarray, exposed: np.ndarray) -> np.ndarray:
    """bool [n]: True where the item is not in `exposed`.

    A lookup table over the candidates' id range (at most the catalogue), cheaper than sorting
    (`np.isin`) at ~1,200 candidates; exposed ids outside that range match nothing, so ids a client
    made up cost no memory.
    """
    item_ids = np.asarray(item_ids, dtype=np.int64)
    exposed = np.asarray(exposed, dtype=np.int64)
    if len(item_ids) == 0 or len(exposed) == 0:
        return np.ones(len(item_ids), dtype=bool)
    low, high = item_ids.min(), item_ids.max()
    shown = np.zeros(high - low + 1, dtype=bool)
    shown[exposed[(exposed >= low) & (exposed <= high)] - low] = True
    return ~shown[item_ids - low]


def filter_exposed(item_ids: np.ndarray, exposed: np.ndarray, min_keep: int, seen: np.ndarray | None = None) -> np.ndarray:
    """Indices (int64, into `item_ids`) of the candidates to keep.

    The unexposed candidates, in candidate order. If fewer than `min_keep` of them remain, exposed
    candidates are appended until `min_keep` (or all candidates) are kept, because a response of
    already-served items beats a short one. The refill order: first the items only served (in
    `exposed` but not in `seen`: sent by the server, never reported shown by the client), then those
    the client reported seen (`seen`, the long-term buffer), each group in candidate order.
    """
    unexposed = unexposed_mask(item_ids, exposed)
    keep = np.flatnonzero(unexposed)
    shortfall = min_keep - len(keep)
    if shortfall <= 0:
        return keep
    reported = ~unexposed & ~unexposed_mask(item_ids, seen if seen is not None else np.empty(0, np.int64))
    refill = np.concatenate([np.flatnonzero(~unexposed & ~reported), np.flatnonzero(reported)])
    return np.concatenate([keep, refill[:shortfall]])


def expired_before(now: float, ttl_s: float) -> float:
    """The score below which buffer entries are expired (`ZREMRANGEBYSCORE key -inf (<cutoff>`)."""
    return now - ttl_s


def exposed_union(*buffers: np.ndarray) -> np.ndarray:
    """The items in any of the buffers (short-term served, long-term real feedback), sorted, int64."""
    parts = [np.asarray(b, dtype=np.int64) for b in buffers]
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)
