"""What a row knows: only events dated strictly before it, for its user and its item."""
from __future__ import annotations

import numpy as np

from cascade.causal import NO_EVENT, Totals, as_of_rows
from cascade.schema import Interactions


def hand_log() -> Interactions:
    # user 0: items 5, 6, 5 at t 10, 10, 20 (the first two in one second); user 1: item 5 at 15, 30
    return Interactions.sorted(
        np.array([0, 0, 0, 1, 1]), np.array([5, 6, 5, 5, 5]), np.array([10, 10, 20, 15, 30]),
        np.array([1.0, 0.0, 1.0, 1.0, 0.0]),
    )


def test_a_row_knows_only_strictly_earlier_events() -> None:
    log = hand_log()
    known = as_of_rows(log)
    # rows in (user, ts) order: (0,5,10,+) (0,6,10,-) (0,5,20,+) (1,5,15,+) (1,5,30,-)
    assert known.user_events.tolist() == [0, 0, 2, 0, 1]  # the same second is not before
    assert known.user_positives.tolist() == [0, 0, 1, 0, 1]
    assert known.user_last_ts.tolist() == [NO_EVENT, NO_EVENT, 10, NO_EVENT, 15]
    # item 5's events: t 10 (+), 15 (+), 20 (+), 30 (-)
    assert known.item_events.tolist() == [0, 0, 2, 1, 3]
    assert known.item_positives.tolist() == [0, 0, 2, 1, 3]


def test_totals_are_what_serving_knows_and_a_cold_user_knows_nothing() -> None:
    totals = Totals.of(hand_log(), n_users=3, n_items=8)
    known = totals.known(np.array([0, 2, 99]), np.array([5, 6, 7]))
    assert known.user_events.tolist() == [3, 0, 0] and known.user_positives.tolist() == [2, 0, 0]
    assert known.user_last_ts.tolist() == [20, NO_EVENT, NO_EVENT]
    assert known.item_events.tolist() == [4, 1, 0] and known.item_positives.tolist() == [3, 0, 0]


def test_the_last_row_of_the_log_as_of_its_time_matches_totals_of_the_rows_before() -> None:
    rng = np.random.default_rng(0)
    log = Interactions.sorted(rng.integers(0, 20, 2_000), rng.integers(0, 50, 2_000), rng.integers(0, 500, 2_000),
                              (rng.random(2_000) < 0.3).astype(np.float32))
    known = as_of_rows(log)
    for row in rng.integers(0, len(log), 50):
        before = log.take(np.flatnonzero(log.ts < log.ts[row]))
        totals = Totals.of(before, 20, 50).known(log.user[row : row + 1], log.item[row : row + 1])
        for field in ("user_events", "user_positives", "user_last_ts", "item_events", "item_positives"):
            assert getattr(known, field)[row] == getattr(totals, field)[0], field
