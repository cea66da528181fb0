"""HistoryIndex.rows, latest_histories and pad_history on a hand-made log."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from cascade.history import PAD_ITEM, HistoryIndex, decode_events, encode_events, latest_histories, pad_history, positives_of
from cascade.schema import Interactions


@pytest.fixture
def log(make_log: Callable[[list], Interactions]) -> Interactions:
    # (user, item, ts, label); given shuffled, the log is sorted by (user, ts):
    # rows 0-4 user 0, rows 5-7 user 1, row 8 user 2 (no positives), each at its own second.
    return make_log([
        (1, 22, 3, 1.0),
        (0, 13, 4, 1.0),
        (2, 30, 9, 0.0),
        (0, 10, 1, 1.0),
        (0, 14, 5, 0.0),
        (1, 20, 1, 0.0),
        (0, 11, 2, 0.0),
        (1, 21, 2, 1.0),
        (0, 12, 3, 1.0),
    ])


def test_the_fixture_is_sorted_as_the_tests_assume(log: Interactions) -> None:
    assert log.user.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 2]
    assert log.item.tolist() == [10, 11, 12, 13, 14, 20, 21, 22, 30]


def neg(item: int) -> int:
    return int(encode_events(np.array([item]), np.array([False]))[0])


def test_a_non_positive_event_is_encoded_below_padding_and_decodes_back() -> None:
    history = np.array([PAD_ITEM, 7, neg(7), neg(0), 0])
    assert history.tolist() == [-1, 7, -9, -2, 0]
    items, positive, padded = decode_events(history)
    assert items.tolist() == [0, 7, 7, 0, 0]
    assert positive.tolist() == [False, True, False, False, True]
    assert padded.tolist() == [True, False, False, False, False]
    assert positives_of(history).tolist() == [7, 0]


def test_rows_hold_every_earlier_event_most_recent_last_left_padded(log: Interactions) -> None:
    index = HistoryIndex.build(log)
    got = index.rows(np.arange(len(log)), 2)
    assert got.dtype == np.int64
    assert got.tolist() == [
        [PAD_ITEM, PAD_ITEM],  # user 0, first row: nothing before
        [PAD_ITEM, 10],  # 10 was positive
        [10, neg(11)],  # 11 was not: it is there, encoded
        [neg(11), 12],
        [12, 13],  # four events before: keep the last two
        [PAD_ITEM, PAD_ITEM],  # user 1 starts empty: nothing of user 0 leaks in
        [PAD_ITEM, neg(20)],
        [neg(20), 21],
        [PAD_ITEM, PAD_ITEM],  # user 2's first event
    ]


def test_events_in_the_rows_own_second_are_not_before_it() -> None:
    log = Interactions.sorted(np.zeros(4, np.int64), np.array([1, 2, 3, 4]), np.array([10, 20, 20, 30]), np.ones(4))
    assert HistoryIndex.build(log).rows(np.arange(4), 3).tolist() == [
        [PAD_ITEM, PAD_ITEM, PAD_ITEM], [PAD_ITEM, PAD_ITEM, 1], [PAD_ITEM, PAD_ITEM, 1], [1, 2, 3],
    ]


def test_rows_never_include_the_row_itself(log: Interactions) -> None:
    got = HistoryIndex.build(log).rows(np.array([3]), 5)  # row 3 is user 0's positive 13
    assert got.tolist() == [[PAD_ITEM, PAD_ITEM, 10, neg(11), 12]]


def test_rows_for_a_subset_in_any_order(log: Interactions) -> None:
    got = HistoryIndex.build(log).rows(np.array([7, 4, 4]), 3)
    assert got.tolist() == [[PAD_ITEM, neg(20), 21], [neg(11), 12, 13], [neg(11), 12, 13]]


def test_latest_histories_take_each_users_last_events(log: Interactions) -> None:
    got = latest_histories(log, n_users=4, length=2)
    assert got.dtype == np.int64
    assert got.tolist() == [[13, neg(14)], [21, 22], [PAD_ITEM, neg(30)], [PAD_ITEM, PAD_ITEM]]
    assert latest_histories(log, n_users=3, length=4).tolist() == [
        [neg(11), 12, 13, neg(14)],
        [PAD_ITEM, neg(20), 21, 22],
        [PAD_ITEM, PAD_ITEM, PAD_ITEM, neg(30)],
    ]


def test_latest_history_equals_the_history_of_a_row_appended_after_the_log(log: Interactions) -> None:
    """Serving's latest history is what training would see for the user's next interaction."""
    extended = Interactions.sorted(
        np.r_[log.user, 0, 1], np.r_[log.item, 99, 99], np.r_[log.ts, 100, 100], np.r_[log.label, 0.0, 0.0]
    )
    next_rows = np.flatnonzero(extended.item == 99)
    from_index = HistoryIndex.build(extended).rows(next_rows, 3)
    assert from_index.tolist() == latest_histories(log, n_users=3, length=3)[:2].tolist()


@pytest.mark.parametrize(
    ("history", "length", "expected"),
    [
        ([5, 6, 7, 8], 2, [7, 8]),  # longer: keep the last L
        ([5, 6], 4, [PAD_ITEM, PAD_ITEM, 5, 6]),  # shorter: left pad
        ([5, 6, 7], 3, [5, 6, 7]),  # exact
        ([], 3, [PAD_ITEM] * 3),
        ([5, 6], 0, []),  # L = 0 must not keep the whole history ([-0:])
    ],
)
def test_pad_history(history: list[int], length: int, expected: list[int]) -> None:
    got = pad_history(np.array(history, dtype=np.int64), length)
    assert got.dtype == np.int64
    assert got.tolist() == expected


def test_merge_live_history_appends_new_clicks_most_recent_last() -> None:
    from cascade.history import merge_live_history

    exported = np.array([PAD_ITEM, PAD_ITEM, 5, 6], dtype=np.int64)
    assert merge_live_history(exported, np.array([7, 6, 8]), 5).tolist() == [PAD_ITEM, 5, 6, 7, 8]  # 6 already there
    assert merge_live_history(exported, np.array([7, 8, 9, 10]), 4).tolist() == [7, 8, 9, 10]  # cut to the last 4
    assert merge_live_history(exported, np.array([], dtype=np.int64), 4).tolist() == exported.tolist()


def test_merge_live_history_keeps_the_latest_of_repeated_clicks() -> None:
    from cascade.history import merge_live_history

    assert merge_live_history(None, np.array([3, 4, 3]), 4).tolist() == [PAD_ITEM, PAD_ITEM, 4, 3]


def test_merge_live_history_of_a_cold_start_user_is_the_clicks_or_padding() -> None:
    from cascade.history import merge_live_history

    assert merge_live_history(None, np.array([9, 2]), 3).tolist() == [PAD_ITEM, 9, 2]
    assert merge_live_history(None, np.array([], dtype=np.int64), 2).tolist() == [PAD_ITEM, PAD_ITEM]
