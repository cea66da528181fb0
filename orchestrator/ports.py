"""The narrow interfaces the funnel talks to. Real adapters: Triton (`clients.triton`), Redis
(`clients.exposure`), the recall channels (`orchestrator.recall`), the exported artefacts
(`orchestrator.resources`); tests and `perf/floor.py` pass in-memory ones."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cascade.features import FeatureTables
from cascade.recall.merge import Candidates
from cascade.samples import ServedSample
from cascade.triton.two_stage import TwoStageScores


@dataclass(frozen=True)
class UserState:
    exposed: np.ndarray  # int64: items in either exposure buffer
    clicks: np.ndarray  # int64: live clicks, most recent last
    seen: np.ndarray  # int64: items the client reported (the long-term buffer), refilled last


class Scorer(Protocol):
    async def score(
        self, scorer: str, version: int, user_id: int, item_ids: np.ndarray, history: np.ndarray, timestamp: int
    ) -> np.ndarray:
        """float32 [n] scores of `item_ids` for the user, by `version` of `scorer` ("prerank" or "rank")."""
        ...

    async def score_two_stage(
        self, versions: Mapping[str, int], user_id: int, item_ids: np.ndarray, history: np.ndarray, timestamp: int,
        keep: int,
    ) -> TwoStageScores:
        """Pre-rank at `versions["prerank"]`, keep the best `keep` (`cascade.ordering.best_first`), rank
        them at `versions["rank"]`: in one call, where the context says the pair is served so."""
        ...


class AudienceScorer(Protocol):
    async def score_lookalike(self, version: int, seeds: np.ndarray, seed_embeddings: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """float32 [C]: each candidate user's probability of joining the seed users' audience; the
        seeds' embeddings [N, d] as they are now (live where re-embedded since the export)."""
        ...


class UserIndex(Protocol):
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [q, k], user ids [q, k]; -1: none) by inner product, as a FAISS index answers."""
        ...


class Places(Protocol):
    async def nearby(self, lat: float, lon: float, radius_km: float, most: int) -> tuple[np.ndarray, np.ndarray]:
        """(user ids, distances in km) within the radius, nearest first, at most `most`."""
        ...

    async def where(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lat, lon) of each user, NaN where unknown."""
        ...


class LiveEmbeddings(Protocol):
    async def get(self, user_ids: np.ndarray, dim: int) -> dict[int, np.ndarray]:
        """The embeddings re-computed from live clicks that are still fresh, by user."""
        ...


class UserStore(Protocol):
    async def user_state(self, user_id: int) -> UserState:
        """What the user was shown (both buffers) and clicked live."""
        ...

    async def record_served(self, user_id: int, item_ids: np.ndarray, sample: ServedSample | None) -> None:
        """The answer's items into the user's exposure, and its served sample (if logged)."""
        ...


class Recall(Protocol):
    async def recall(self, user_id: int, history: np.ndarray | None, timestamp: int) -> Candidates:
        """Candidates for one user; `history` None is a cold-start user."""
        ...


class Catalogue(Protocol):
    tables: FeatureTables
    unit_item_embeddings: np.ndarray  # [n_items, d], rows of unit length (the rerank's cosine)

    @property
    def model_versions(self) -> Mapping[str, int]:
        """The exported version of every model (the user tower's too)."""
        ...

    def history_of(self, user_id: int) -> np.ndarray | None:
        """The exported behaviour sequence, None for a user the export never saw."""
        ...


class OperatorBoard(Protocol):
    """What every orchestrator process must agree on: the active scorer versions (`orchestrator.versions`:
    a switch writes its scorer's version here, every process follows), the count of recall-config
    reloads asked for (every process re-reads the file when it grows), and the A/B experiments in
    force (`orchestrator.experiments`: a change writes them here, every process follows)."""

    async def read(self) -> dict[str, int]:
        """The versions written so far, by scorer ({} before any switch)."""
        ...

    async def write(self, scorer: str, version: int) -> None:
        """`scorer`'s active version is now `version` (only that scorer's entry changes)."""
        ...

    async def recall_reloads(self) -> int:
        """Reloads of the recall config asked for so far (0 before any)."""
        ...

    async def count_recall_reload(self) -> int:
        """One more reload asked for; returns the new count."""
        ...

    async def experiments(self) -> str | None:
        """The experiments in force as written: the JSON text of CASCADE_EXPERIMENTS' list, unchecked
        (the reader validates it); None while none were written: the environment's stand."""
        ...

    async def write_experiments(self, text: str) -> None:
        """The experiments in force are now `text` (valid JSON of CASCADE_EXPERIMENTS' list; "[]": none)."""
        ...
