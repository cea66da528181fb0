"""Look-alike tasks cut from a log, and how a method that scores users is judged on them (pure numpy).

A task is an item with at least `MIN_SEEDS` likers in the seed window and a like in a later window
from a user who had not liked it before. Its seeds are its `MAX_SEEDS` most recent likers in the
seed window; its targets are the later window's new likers; its candidates are every user but the
item's earlier likers: who will be active later is not known when a campaign is planned. The
`active_only` view keeps only the users active in the later window, which uses that future.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cascade.metrics import recall_per_user
from cascade.schema import Interactions

MIN_SEEDS = 5
MAX_SEEDS = 50


@dataclass(frozen=True)
class Task:
    item: int
    seeds: np.ndarray  # int64 user ids, most recent first
    known: np.ndarray  # every liker of the item in the seed window (never candidates)
    targets: set[int]  # the later window's likers outside `known`
    audience: np.ndarray  # bool [users]: the candidates, `known` aside (every user, or the later window's active ones)


def tasks_for(log: Interactions, seed_window: np.ndarray, window: np.ndarray, limit: int, seed: int,
              active_only: bool = False) -> list[Task]:
    """Up to `limit` seeded-random tasks: seeds from the rows in `seed_window`, targets from the rows
    in `window` (both boolean masks over the log). Every user is in the audience; `active_only`: only
    those active in `window`, a candidate set that knows the future."""
    liked = log.label > 0.5
    rows = np.flatnonzero(seed_window & liked)
    rows = rows[np.lexsort((-log.ts[rows], log.item[rows]))]  # by item, most recent first
    items, starts = np.unique(log.item[rows], return_index=True)
    later = np.flatnonzero(window & liked)
    later = later[np.argsort(log.item[later], kind="stable")]  # grouped by item: each task reads its slice
    later_items = log.item[later]
    n_users = int(log.user.max()) + 1
    audience = np.bincount(log.user[window], minlength=n_users) > 0 if active_only else np.ones(n_users, bool)
    out = []
    for item, lo, hi in zip(items, starts, np.r_[starts[1:], len(rows)]):
        if hi - lo < MIN_SEEDS:
            continue
        known = np.unique(log.user[rows[lo:hi]])
        first_later, end_later = np.searchsorted(later_items, item, "left"), np.searchsorted(later_items, item, "right")
        targets = set(log.user[later[first_later:end_later]].tolist()) - set(known.tolist())
        if targets:
            seeds = log.user[rows[lo:hi]]
            _, first = np.unique(seeds, return_index=True)
            out.append(Task(int(item), seeds[np.sort(first)][:MAX_SEEDS], known, targets, audience))
    order = np.random.default_rng(seed).permutation(len(out))[:limit]
    return [out[i] for i in order]


Ranker = Callable[[Task], np.ndarray]  # a task -> a score for every user (known users are dropped after)


def ranked(scores: np.ndarray, task: Task, k: int) -> np.ndarray:
    """The top-k of the task's candidates by score: its audience without its known users."""
    candidates = task.audience.copy()
    candidates[task.known] = False
    ids = np.flatnonzero(candidates)
    if len(ids) > k:
        ids = ids[np.argpartition(-scores[ids], k)[:k]]
    return ids[np.argsort(-scores[ids], kind="stable")]


def recalls(tasks: list[Task], rank: Ranker, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Each task's Recall@K for every K in `ks`."""
    lists, targets = [ranked(rank(t), t, max(ks)) for t in tasks], [t.targets for t in tasks]
    return {k: recall_per_user(lists, targets, k) for k in ks}
