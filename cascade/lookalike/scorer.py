"""The exported look-alike scorer over user ids: the inputs of one seed set and its candidates looked
up in the users' table, then one ONNX Runtime run. Triton's look-alike model
(`cascade.triton.lookalike_model`) and the evaluation (`export.eval_lookalike`) both score this way;
Triton's is sent the seeds' embeddings too, so a seed re-embedded from live clicks scores as it is now.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cascade.lookalike.users import UserSide
from cascade.specs import LOOKALIKE_GRAPH_INPUTS, LOOKALIKE_GRAPH_OUTPUT, LOOKALIKE_INPUTS

MAX_SEEDS = 4_096  # the graph's seed dimension is exported up to this (`export.lookalike.export_scorer`)


def graph_feed(side: UserSide, seeds: np.ndarray, candidates: np.ndarray,
               seed_embeddings: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The ONNX graph's inputs for `seeds` against `candidates` (user ids); `seed_embeddings` [N, d]
    in place of the table's, when given."""
    embedding, fields, activity = side.rows(seeds)
    seed_side = (embedding if seed_embeddings is None else seed_embeddings, fields, activity)
    return dict(zip(LOOKALIKE_GRAPH_INPUTS, (*seed_side, *side.rows(candidates))))


def graph_scores(session, side: UserSide, seeds: np.ndarray, candidates: np.ndarray,
                 seed_embeddings: np.ndarray | None = None) -> np.ndarray:
    """float32 [C]: each candidate's probability of joining the seeds' audience. `session`: an
    onnxruntime.InferenceSession of the exported scorer."""
    if not len(candidates):
        return np.empty(0, np.float32)
    return session.run([LOOKALIKE_GRAPH_OUTPUT], graph_feed(side, seeds, candidates, seed_embeddings))[0]


Request = tuple[np.ndarray, np.ndarray, np.ndarray]  # seed ids [N], their embeddings [N, d], candidate ids [C]


class SeedScorer:
    """User ids in, probabilities out, over a users' table and the exported graph."""

    def __init__(self, side: UserSide, session) -> None:
        self.side, self.session = side, session

    def parse(self, tensors: Mapping[str, np.ndarray]) -> Request:
        """(seeds, their embeddings, candidates) from a request's tensors; ValueError naming the tensor at fault."""
        missing = [spec.name for spec in LOOKALIKE_INPUTS if spec.name not in tensors]
        if missing:
            raise ValueError(f"{missing[0]} is missing")
        seeds, candidates = (self._ids(tensors, name) for name in ("seed_ids", "candidate_ids"))
        if not 1 <= len(seeds) <= MAX_SEEDS:
            raise ValueError(f"seed_ids must hold 1..{MAX_SEEDS} users, got {len(seeds)}")
        flat, dim = np.asarray(tensors["seed_embeddings"], np.float32).reshape(-1), self.side.embedding.shape[1]
        if len(flat) != len(seeds) * dim:
            raise ValueError(f"seed_embeddings must hold {len(seeds)} x {dim} values (a row per seed), got {len(flat)}")
        if not np.isfinite(flat).all():
            raise ValueError("seed_embeddings holds a value that is not finite")
        return seeds, flat.reshape(len(seeds), dim), candidates

    def _ids(self, tensors: Mapping[str, np.ndarray], name: str) -> np.ndarray:
        ids = np.asarray(tensors[name]).reshape(-1).astype(np.int64, copy=False)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.side.n_users):
            raise ValueError(f"{name} holds ids outside 0..{self.side.n_users - 1}")
        return ids

    def score(self, requests: list[Request]) -> list[np.ndarray]:
        """One run per request: two seed sets do not share a graph call."""
        return [graph_scores(self.session, self.side, seeds, candidates, embeddings) for seeds, embeddings, candidates in requests]
