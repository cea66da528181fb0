"""Micro-batching of the ANN recall channel across concurrent requests.

A request's ANN lookup (user tower + FAISS, `AnnRecall.search_many`) leaves for the thread pool at
once while fewer than `max_in_flight` batches run, so a lone request never waits for company.
Otherwise it queues, and when a batch finishes the queue leaves as the next batch: at most
`max_batch` lookups, oldest first, with the oldest one's k (lookups only differ in k across a
reload of the channel file). The lookups that pile up while a batch runs thus share one user-tower
call and one index search, whose cost per lookup falls with the batch size. Each lookup gets the
answer it would get alone (`search_many`); a batch that fails raises its error in every request
of the batch.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial

import numpy as np

MAX_BATCH = 16

Answer = tuple[np.ndarray, np.ndarray]  # item ids int64, scores float32, best first
SearchMany = Callable[[np.ndarray, np.ndarray, np.ndarray, int], list[Answer]]


@dataclass(frozen=True)
class _Lookup:
    user_id: int
    history: np.ndarray  # int64 [L], padded
    timestamp: int
    k: int
    answer: asyncio.Future


class AnnBatcher:
    def __init__(
        self, search_many: SearchMany, executor: Executor, max_batch: int = MAX_BATCH, max_in_flight: int = 1
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError(f"max_batch and max_in_flight must be >= 1, got {max_batch}, {max_in_flight}")
        self.search_many, self.executor = search_many, executor
        self.max_batch, self.max_in_flight = max_batch, max_in_flight
        self._queue: deque[_Lookup] = deque()
        self._in_flight = 0

    def submit(self, user_id: int, history: np.ndarray, timestamp: int, k: int) -> asyncio.Future:
        """Queue one lookup (on the event loop); the future resolves to its (item ids, scores).

        A plain method rather than a coroutine, so that the lookup is on its way before the caller
        goes on to its other channels; cancelling the future drops the lookup.
        """
        # int64 here, in the caller: a value that does not fit fails its own request, not its batch.
        lookup = _Lookup(int(np.int64(user_id)), history, int(np.int64(timestamp)), k, asyncio.get_running_loop().create_future())
        self._queue.append(lookup)
        self._dispatch()
        return lookup.answer

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue and self._in_flight < self.max_in_flight:
            batch = self._next_batch()
            if not batch:
                continue
            self._in_flight += 1
            try:
                running = loop.run_in_executor(self.executor, self._search, batch)
            except RuntimeError as err:  # the executor is shut down
                running = loop.create_future()
                running.set_exception(err)
            running.add_done_callback(partial(self._deliver, batch))

    def _next_batch(self) -> list[_Lookup]:
        """Up to `max_batch` live lookups with the oldest one's k; the others keep their places."""
        k = self._queue[0].k
        batch: list[_Lookup] = []
        skipped: list[_Lookup] = []
        while self._queue and len(batch) < self.max_batch:
            lookup = self._queue.popleft()
            if lookup.answer.done():  # cancelled while queued
                continue
            (batch if lookup.k == k else skipped).append(lookup)
        self._queue.extendleft(reversed(skipped))
        return batch

    def _search(self, batch: list[_Lookup]) -> list[Answer]:
        """On a pool thread."""
        return self.search_many(
            np.array([lookup.user_id for lookup in batch], dtype=np.int64),
            np.stack([lookup.history for lookup in batch]),
            np.array([lookup.timestamp for lookup in batch], dtype=np.int64),
            batch[0].k,
        )

    def _deliver(self, batch: list[_Lookup], running: asyncio.Future) -> None:
        """On the event loop, when a batch is done: answer its lookups, then start the next batch.
        A lookup whose request gave up meanwhile is already done and is passed over."""
        self._in_flight -= 1
        try:
            answers = running.result()
            if len(answers) != len(batch):
                raise RuntimeError(f"ANN search gave {len(answers)} answers for {len(batch)} lookups")
        except asyncio.CancelledError:  # the pool was shut down under it
            for lookup in batch:
                lookup.answer.cancel()
        except Exception as err:
            for lookup in batch:
                if not lookup.answer.done():
                    lookup.answer.set_exception(err)
        else:
            for lookup, answer in zip(batch, answers):
                if not lookup.answer.done():
                    lookup.answer.set_result(answer)
        self._dispatch()
