"""In-process `UserStore` and `OperatorBoard`: the exposure and live clicks of each user, and the shared
active versions and experiments, in dictionaries and a string.

For one process with nothing to share: the funnel's unit tests and `perf/floor.py`. Same contract as
the Redis store (`orchestrator.clients.exposure`): served items enter the user's exposure, samples are
kept in order; no expiry (a benchmark or a test outlives no TTL).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from cascade.samples import ServedSample
from orchestrator.ports import UserState


class MemoryUserStore:
    def __init__(self) -> None:
        self.served: dict[int, list[int]] = defaultdict(list)
        self.seen: dict[int, list[int]] = defaultdict(list)  # reported by the client
        self.clicks: dict[int, list[int]] = defaultdict(list)  # oldest first
        self.samples: list[ServedSample] = []

    async def user_state(self, user_id: int) -> UserState:
        seen = np.array(self.seen.get(user_id, ()), np.int64)
        exposed = np.union1d(np.array(self.served.get(user_id, ()), np.int64), seen)
        return UserState(exposed, np.array(self.clicks.get(user_id, ()), np.int64), seen)

    async def record_served(self, user_id: int, item_ids: np.ndarray, sample: ServedSample | None) -> None:
        self.served[user_id].extend(item_ids.tolist())
        if sample is not None:
            self.samples.append(sample)


class MemoryOperatorBoard:
    """An in-process `OperatorBoard`: what several `ScorerVersions` or `SharedExperiments` of one test share."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.reloads = 0
        self.experiments_text: str | None = None  # None: never written

    async def read(self) -> dict[str, int]:
        return dict(self.versions)

    async def write(self, scorer: str, version: int) -> None:
        self.versions[scorer] = version

    async def recall_reloads(self) -> int:
        return self.reloads

    async def count_recall_reload(self) -> int:
        self.reloads += 1
        return self.reloads

    async def experiments(self) -> str | None:
        return self.experiments_text

    async def write_experiments(self, text: str) -> None:
        self.experiments_text = text
