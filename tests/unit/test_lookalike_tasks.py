"""Look-alike tasks cut from a log, and the candidates a method may rank."""
from __future__ import annotations

import numpy as np

from cascade.lookalike.tasks import MIN_SEEDS, Task, ranked, tasks_for
from cascade.schema import Interactions


def _log() -> tuple[Interactions, np.ndarray, np.ndarray]:
    """Item 0: liked by users 0-5 in training (user 5 last), later by users 3 (known) and 7; user 9
    is active later without liking it. Item 1: too few training likers."""
    rows = [(u, 0, 100 + u, 1.0) for u in range(6)] + [(6, 0, 50, 0.0), (0, 1, 10, 1.0)]
    rows += [(3, 0, 1_000, 1.0), (7, 0, 1_001, 1.0), (9, 1, 1_002, 0.0), (8, 1, 1_003, 1.0)]
    user, item, ts, label = (np.array(c) for c in zip(*rows))
    log = Interactions.sorted(user, item, ts, label)
    train = log.ts < 1_000
    return log, train, ~train


def test_a_task_holds_recent_seeds_new_likers_and_every_user_as_candidates() -> None:
    log, train, later = _log()
    tasks = tasks_for(log, train, later, limit=10, seed=0)
    assert MIN_SEEDS <= 6 and [t.item for t in tasks] == [0]
    task = tasks[0]
    assert task.seeds.tolist() == [5, 4, 3, 2, 1, 0]  # most recent first
    assert task.targets == {7}  # user 3 liked it in training already
    assert task.audience.all() and len(task.audience) == 10
    assert 6 in ranked(np.zeros(10), task, 10).tolist()  # inactive later, a candidate still
    active = tasks_for(log, train, later, limit=10, seed=0, active_only=True)[0]
    assert np.flatnonzero(active.audience).tolist() == [3, 7, 8, 9] and active.targets == task.targets


def test_ranking_keeps_to_the_audience_and_leaves_out_known_users() -> None:
    audience = np.zeros(10, bool)
    audience[[1, 2, 3, 4]] = True
    task = Task(0, np.array([0]), np.array([0, 2]), {3}, audience)
    scores = np.arange(10, dtype=np.float64)[::-1]  # user 0 best
    assert ranked(scores, task, 2).tolist() == [1, 3]
    assert ranked(scores, task, 100).tolist() == [1, 3, 4]
