"""AnnBatcher: a lone lookup goes at once, lookups queued behind a running batch go as one batch
(at most max_batch, same k), each gets its own answer, and a failing batch fails all its requests."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from orchestrator.ann_batcher import AnnBatcher

HISTORY = np.array([-1, 3], dtype=np.int64)


class FakeSearch:
    """Answers user u with items [u, u + 1, ...] (k of them); blocks while `gate` is clear."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[int], int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def __call__(self, user_ids: np.ndarray, histories: np.ndarray, timestamps: np.ndarray, k: int):
        assert histories.shape == (len(user_ids), 2) and timestamps.shape == user_ids.shape
        self.gate.wait(5)
        self.batches.append((user_ids.tolist(), k))
        if self.fail:
            raise RuntimeError("index gone")
        return [(np.arange(u, u + k, dtype=np.int64), np.zeros(k, np.float32)) for u in user_ids.tolist()]


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


async def test_a_lone_lookup_goes_at_once(pool: ThreadPoolExecutor) -> None:
    search = FakeSearch()
    batcher = AnnBatcher(search, pool)
    ids, _ = await asyncio.wait_for(batcher.submit(7, HISTORY, 0, 3), 5)
    assert ids.tolist() == [7, 8, 9] and search.batches == [([7], 3)]


async def test_lookups_queued_behind_a_batch_go_together_and_get_their_own_answers(pool: ThreadPoolExecutor) -> None:
    search = FakeSearch()
    batcher = AnnBatcher(search, pool, max_batch=4)
    search.gate.clear()
    first = batcher.submit(0, HISTORY, 0, 2)  # runs (blocked)
    queued = [batcher.submit(u, HISTORY, 0, 2) for u in range(1, 7)]
    search.gate.set()
    answers = await asyncio.wait_for(asyncio.gather(first, *queued), 5)
    assert [ids.tolist() for ids, _ in answers] == [[u, u + 1] for u in range(7)]
    assert search.batches == [([0], 2), ([1, 2, 3, 4], 2), ([5, 6], 2)]


async def test_only_lookups_with_the_same_k_share_a_batch(pool: ThreadPoolExecutor) -> None:
    search = FakeSearch()
    batcher = AnnBatcher(search, pool)
    search.gate.clear()
    first = batcher.submit(0, HISTORY, 0, 2)
    queued = [batcher.submit(1, HISTORY, 0, 2), batcher.submit(2, HISTORY, 0, 3), batcher.submit(3, HISTORY, 0, 2)]
    search.gate.set()
    answers = await asyncio.wait_for(asyncio.gather(first, *queued), 5)
    assert [len(ids) for ids, _ in answers] == [2, 2, 3, 2]
    assert search.batches == [([0], 2), ([1, 3], 2), ([2], 3)]


async def test_at_most_max_in_flight_batches_run(pool: ThreadPoolExecutor) -> None:
    search = FakeSearch()
    batcher = AnnBatcher(search, pool, max_in_flight=2)
    search.gate.clear()
    lookups = [batcher.submit(u, HISTORY, 0, 1) for u in range(5)]
    search.gate.set()
    await asyncio.wait_for(asyncio.gather(*lookups), 5)
    # 0 and 1 went at once, one batch each; 2-4 queued behind them and went as one batch (the threads
    # may record them in any order: the third batch can start before the first one's thread records)
    assert sorted(search.batches) == [([0], 1), ([1], 1), ([2, 3, 4], 1)]


async def test_an_error_reaches_every_request_of_the_batch_and_the_next_still_runs(pool: ThreadPoolExecutor) -> None:
    search = FakeSearch()
    batcher = AnnBatcher(search, pool)
    search.gate.clear()
    search.fail = True
    lookups = [batcher.submit(u, HISTORY, 0, 1) for u in range(3)]
    search.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*lookups, return_exceptions=True), 5)
    assert all(isinstance(r, RuntimeError) and "index gone" in str(r) for r in results)
    search.fail = False
    ids, _ = await asyncio.wait_for(batcher.submit(9, HISTORY, 0, 1), 5)
    assert ids.tolist() == [9]


async def test_a_wrong_number_of_answers_is_an_error() -> None:
    def short(user_ids, histories, timestamps, k):
        return []

    with ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(RuntimeError, match="0 answers for 1 lookups"):
            await asyncio.wait_for(AnnBatcher(short, pool).submit(1, HISTORY, 0, 1), 5)


async def test_a_cancelled_lookup_is_dropped_and_the_rest_are_answered(pool: ThreadPoolExecutor) -> None:
    search = FakeSearch()
    batcher = AnnBatcher(search, pool)
    search.gate.clear()
    first = batcher.submit(0, HISTORY, 0, 1)
    gone, kept = batcher.submit(1, HISTORY, 0, 1), batcher.submit(2, HISTORY, 0, 1)
    gone.cancel()
    search.gate.set()
    await asyncio.wait_for(asyncio.gather(first, kept), 5)
    assert search.batches == [([0], 1), ([2], 1)]


async def test_a_shut_down_pool_fails_the_lookup_instead_of_hanging() -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shutdown"):
        await asyncio.wait_for(AnnBatcher(FakeSearch(), pool).submit(1, HISTORY, 0, 1), 5)


def test_sizes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        AnnBatcher(FakeSearch(), ThreadPoolExecutor(max_workers=1), max_batch=0)


async def test_a_value_outside_int64_fails_its_own_lookup_not_its_batch(pool: ThreadPoolExecutor) -> None:
    search = FakeSearch()
    batcher = AnnBatcher(search, pool, max_batch=4)
    search.gate.clear()
    first = batcher.submit(0, HISTORY, 0, 2)  # runs (blocked); the next ones queue behind it
    neighbour = batcher.submit(1, HISTORY, 0, 2)
    with pytest.raises(OverflowError):
        batcher.submit(2, HISTORY, 2**63, 2)
    search.gate.set()
    answers = await asyncio.wait_for(asyncio.gather(first, neighbour), 5)
    assert [ids.tolist() for ids, _ in answers] == [[0, 1], [1, 2]]
