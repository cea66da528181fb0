"""The exported look-alike scorer over user ids: the inputs of one seed set and its candidates looked
up in the users' table, then one ONNX Runtime run. Triton's look-alike model
(`cascade.triton.lookalike_model`) and the evaluation (`export.eval_lookalike`) both score this way.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cascade.lookalike.users import UserSide
from cascade.specs import LOOKALIKE_GRAPH_INPUTS, LOOKALIKE_GRAPH_OUTPUT, LOOKALIKE_INPUTS

MAX_SEEDS = 4_096  # the graph's seed dimension is exported up to this (`export.lookalike.export_scorer`)


def graph_feed(side: UserSide, seeds: np.ndarray, candidates: np.ndarray) -> dict[str, np.ndarray]:
    """The ONNX graph's inputs for `seeds` against `candidates` (user ids)."""
    return dict(zip(LOOKALIKE_GRAPH_INPUTS, (*side.rows(seeds), *side.rows(candidates))))


def graph_scores(session, side: UserSide, seeds: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """float32 [C]: each candidate's probability of joining the seeds' audience. `session`: an
    onnxruntime.InferenceSession of the exported scorer."""
    if not len(candidates):
        return np.empty(0, np.float32)
    return session.run([LOOKALIKE_GRAPH_OUTPUT], graph_feed(side, seeds, candidates))[0]


class SeedScorer:
    """User ids in, probabilities out, over a users' table and the exported graph."""

    def __init__(self, side: UserSide, session) -> None:
        self.side, self.session = side, session

    def parse(self, tensors: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(seeds, candidates) from a request's tensors; ValueError naming the tensor at fault."""
        out = []
        for spec in LOOKALIKE_INPUTS:
            if spec.name not in tensors:
                raise ValueError(f"{spec.name} is missing")
            ids = np.asarray(tensors[spec.name]).reshape(-1).astype(np.int64, copy=False)
            if len(ids) and (ids.min() < 0 or ids.max() >= self.side.n_users):
                raise ValueError(f"{spec.name} holds ids outside 0..{self.side.n_users - 1}")
            out.append(ids)
        seeds, candidates = out
        if not 1 <= len(seeds) <= MAX_SEEDS:
            raise ValueError(f"seed_ids must hold 1..{MAX_SEEDS} users, got {len(seeds)}")
        return seeds, candidates

    def score(self, requests: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """One run per request: two seed sets do not share a graph call."""
        return [graph_scores(self.session, self.side, seeds, candidates) for seeds, candidates in requests]
