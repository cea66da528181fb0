"""Seed-set aggregation: how similar a candidate user is to a set of seed users.

Two aggregations over unit-length user embeddings:

* **mean pooling**: the candidate's cosine with the seeds' mean direction;
* **attention** (RALM, KDD 2019, without its learned layers): a *global* part, the seeds weighted by
  how typical each is of the set (a softmax over each seed's mean cosine with the other seeds, so a
  stray seed counts less), and a *local*, candidate-aware part, a softmax over the candidate's
  cosines with the seeds that lets the seeds nearest the candidate speak (a soft maximum). A seed
  set drawn from several groups of users (an item liked by two audiences) has a mean that lies
  between them, near neither; the local part still finds each group's look-alikes.

The temperatures and the mix are chosen on a validation window (`export.eval_lookalike`); they are
the model's only parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.rerank.similarity import unit_rows

CHUNK = 4_096  # candidates scored at once by the local part ([chunk, seeds] cosines)


@dataclass(frozen=True)
class AttentionParams:
    local_temperature: float = 0.1
    global_temperature: float = 0.1
    mix: float = 0.5  # the global part's weight; 1 - mix goes to the local part

    def __post_init__(self) -> None:
        if self.local_temperature <= 0 or self.global_temperature <= 0:
            raise ValueError(f"temperatures must be > 0, got {self.local_temperature} and {self.global_temperature}")
        if not 0.0 <= self.mix <= 1.0:
            raise ValueError(f"mix must be in [0, 1], got {self.mix}")


def _softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def _check(candidates: np.ndarray, seeds: np.ndarray) -> None:
    if seeds.ndim != 2 or not len(seeds):
        raise ValueError(f"seeds must be a non-empty [n, d] array, got shape {seeds.shape}")
    if candidates.ndim != 2 or candidates.shape[1] != seeds.shape[1]:
        raise ValueError(f"candidates must be [m, {seeds.shape[1]}], got shape {candidates.shape}")


def mean_query(seeds: np.ndarray) -> np.ndarray:
    """The seeds' mean direction, unit length: the query a nearest-neighbour index is searched with."""
    return unit_rows(unit_rows(seeds, np.float32).mean(axis=0, keepdims=True), np.float32)[0]


def global_query(seeds: np.ndarray, temperature: float) -> np.ndarray:
    """The seeds weighted by how typical each is of the set, unit length (the global attention)."""
    seeds = unit_rows(seeds, np.float32)
    if len(seeds) == 1:
        return seeds[0]
    cosines = seeds @ seeds.T
    typical = (cosines.sum(axis=1) - np.diag(cosines)) / (len(seeds) - 1)
    return unit_rows((_softmax(typical / temperature) @ seeds)[None], np.float32)[0]


def mean_pooled_scores(candidates: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Each candidate's cosine with the seeds' mean direction, float32 [m]."""
    _check(candidates, seeds)
    return unit_rows(candidates, np.float32) @ mean_query(seeds)


def attention_scores(candidates: np.ndarray, seeds: np.ndarray, params: AttentionParams) -> np.ndarray:
    """mix x (cosine with the global query) + (1 - mix) x (the candidate's attention-weighted cosine
    with the seeds), float32 [m]."""
    _check(candidates, seeds)
    candidates, seeds = unit_rows(candidates, np.float32), unit_rows(seeds, np.float32)
    out = np.empty(len(candidates), np.float32)
    glob = candidates @ global_query(seeds, params.global_temperature)
    for lo in range(0, len(candidates), CHUNK):
        cosines = candidates[lo : lo + CHUNK] @ seeds.T
        local = (_softmax(cosines / params.local_temperature) * cosines).sum(axis=1)
        out[lo : lo + CHUNK] = params.mix * glob[lo : lo + CHUNK] + (1.0 - params.mix) * local
    return out
