"""merge_channels: priority, quotas, dedup with provenance, limit, invalid ids."""
from __future__ import annotations

import numpy as np
import pytest

from cascade.recall.merge import Candidates, merge_channels


def channel(name: str, ids: list[int]) -> tuple[str, np.ndarray, np.ndarray]:
    """A channel whose score for each item is 100 * its position + the id, easy to trace."""
    ids_arr = np.array(ids, dtype=np.int64)
    return name, ids_arr, (100.0 * np.arange(len(ids)) + ids_arr).astype(np.float32)


def test_priority_order_and_provenance_of_duplicates() -> None:
    merged = merge_channels([channel("ann", [5, 3, 9]), channel("popular", [3, 7, 5, 1])], limit=10)
    assert merged.item_ids.tolist() == [5, 3, 9, 7, 1]
    assert merged.channels.tolist() == [0, 0, 0, 1, 1]
    assert merged.channel_names == ("ann", "popular")
    # 7 and 1 keep popular's own scores (positions 1 and 3 there).
    assert merged.scores.tolist() == [5.0, 103.0, 209.0, 107.0, 301.0]
    assert merged.item_ids.dtype == np.int64 and merged.channels.dtype == np.int64
    assert merged.scores.dtype == np.float32


def test_duplicates_inside_a_channel_keep_the_first_position() -> None:
    merged = merge_channels([channel("i2i", [4, 2, 4, 6, 2])], limit=10)
    assert merged.item_ids.tolist() == [4, 2, 6]
    assert merged.scores.tolist() == [4.0, 102.0, 306.0]


def test_quota_counts_only_new_items_and_leaves_skipped_ones_to_later_channels() -> None:
    merged = merge_channels(
        [channel("ann", [1, 2, 3, 4]), channel("popular", [2, 4, 8, 9, 10]), channel("cold", [3, 11])],
        limit=10,
        quotas={"ann": 2, "popular": 2},
    )
    # ann takes 1, 2; popular skips 2 (taken), takes 4 (ann's quota left it free) and 8;
    # cold has no quota and takes 3 and 11.
    assert merged.item_ids.tolist() == [1, 2, 4, 8, 3, 11]
    assert merged.channels.tolist() == [0, 0, 1, 1, 2, 2]


def test_zero_quota_silences_a_channel() -> None:
    merged = merge_channels([channel("ann", [1]), channel("popular", [2])], limit=5, quotas={"ann": 0})
    assert merged.item_ids.tolist() == [2]
    assert merged.channels.tolist() == [1]


def test_limit_cuts_in_priority_order() -> None:
    merged = merge_channels([channel("ann", [1, 2, 3]), channel("popular", [4, 5])], limit=4)
    assert merged.item_ids.tolist() == [1, 2, 3, 4]
    assert len(merge_channels([channel("ann", [1, 2])], limit=0)) == 0


def test_no_channels_gives_an_empty_typed_set() -> None:
    merged = merge_channels([], limit=10)
    assert len(merged) == 0 and merged.channel_names == ()
    assert merged.item_ids.dtype == np.int64 and merged.scores.dtype == np.float32


def test_negative_id_names_the_channel() -> None:
    with pytest.raises(ValueError, match="'popular'"):
        merge_channels([channel("ann", [1]), channel("popular", [2, -1])], limit=10)


def test_mismatched_lengths_and_negative_quota_are_rejected() -> None:
    with pytest.raises(ValueError, match="'ann'"):
        merge_channels([("ann", np.array([1, 2]), np.array([0.5], np.float32))], limit=10)
    with pytest.raises(ValueError, match="quotas"):
        merge_channels([channel("ann", [1])], limit=10, quotas={"ann": -1})


def test_take_reorders_and_keeps_channel_names() -> None:
    merged = merge_channels([channel("ann", [5, 3]), channel("popular", [7])], limit=10)
    taken = merged.take(np.array([2, 0]))
    assert isinstance(taken, Candidates)
    assert taken.item_ids.tolist() == [7, 5]
    assert taken.channels.tolist() == [1, 0]
    assert taken.scores.tolist() == [7.0, 5.0]
    assert taken.channel_names == ("ann", "popular")


def reference_merge(channels, limit, quotas):
    """The merge rules item by item, in plain Python."""
    taken: dict[int, tuple[int, float]] = {}
    room = limit
    for index, (name, ids, scores) in enumerate(channels):
        quota = min(quotas.get(name, room), room)
        took = 0
        for item, score in zip(ids.tolist(), scores.tolist()):
            if took == quota:
                break
            if item not in taken:
                taken[item] = (index, score)
                took += 1
        room -= took
    return list(taken), [c for c, _ in taken.values()], [s for _, s in taken.values()]


@pytest.mark.parametrize("seed", range(30))
def test_random_channels_with_repeats_match_the_item_by_item_rules(seed: int) -> None:
    rng = np.random.default_rng(seed)
    channels = [
        (name, *channel(name, rng.integers(0, 40, rng.integers(0, 30)).tolist())[1:])
        for name in ("ann", "item_to_item", "popular", "explore")[: rng.integers(1, 5)]
    ]
    quotas = {name: int(rng.integers(0, 12)) for name, _, _ in channels if rng.random() < 0.7}
    limit = int(rng.integers(0, 40))
    merged = merge_channels(channels, limit=limit, quotas=quotas)
    ids, provenance, scores = reference_merge(channels, limit, quotas)
    assert merged.item_ids.tolist() == ids
    assert merged.channels.tolist() == provenance
    assert merged.scores.tolist() == scores
