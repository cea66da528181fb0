"""Pre-rank -> top-k -> rank in one process and one call (no Triton import).

The CPU profile's `two_stage_p<P>_r<R>` model (`cascade.triton.two_stage_model`) runs this, so a
request that would call `prerank_pipeline_v<P>` and then `rank_pipeline_v<R>` makes one Triton call
instead of two. Each gRPC call into a Python-backend model cost ~1.5 ms of CPU (client, server and
stub) and of latency before any scoring, measured with one candidate (perf/README.md); this also
assembles the user side once instead of twice.

The result is the two calls' result: the same feature assembly, the pre-ranker's scores, the same
top-k rule (`cascade.ordering.best_first`), then the ranker over the kept candidates, their item
side and `user_row` gathered from what the pre-ranker read and the user side as it was (every item
feature is computed per candidate, so a gathered row is what assembly makes for it alone).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cascade.features import FeatureTables, assemble_request_feed
from cascade.ordering import best_first
from cascade.specs import USER_SIDE
from cascade.triton.batching import FeatureRequest, parse_feature_request
from cascade.triton.fused import FusedScorer


@dataclass(frozen=True)
class TwoStageRequest:
    request: FeatureRequest
    keep: int  # how many candidates the pre-ranker passes to the ranker


@dataclass(frozen=True)
class TwoStageScores:
    kept: np.ndarray  # int64 [m]: indices into the request's item_ids, best pre-rank score first
    prerank: np.ndarray  # float32 [m]: their pre-rank scores
    rank: np.ndarray  # float32 [m]: their rank scores, in the same order


def parse_two_stage_request(tables: FeatureTables, tensors: dict[str, np.ndarray]) -> TwoStageRequest:
    """The raw request tensors plus `keep` [1, 1]; raises ValueError naming the bad input."""
    keep = tensors.get("keep")
    if keep is None:
        raise ValueError("missing input 'keep'")
    if keep.shape != (1, 1) or int(keep[0, 0]) < 1:
        raise ValueError(f"input 'keep' must be one count >= 1 of shape [1, 1], got {keep.tolist()}")
    return TwoStageRequest(parse_feature_request(tables, tensors), int(keep[0, 0]))


class TwoStageScorer:
    def __init__(
        self, tables: FeatureTables, prerank_onnx: Path, rank_onnx: Path, intra_op_threads: int = 1,
        rank_initializers: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.tables = tables
        self.prerank = FusedScorer(tables, prerank_onnx, intra_op_threads)
        self.rank = FusedScorer(tables, rank_onnx, intra_op_threads, rank_initializers)
        self.names = self.prerank.input_names | self.rank.input_names

    def parse(self, tensors: dict[str, np.ndarray]) -> TwoStageRequest:
        return parse_two_stage_request(self.tables, tensors)

    def score(self, requests: list[TwoStageRequest]) -> list[TwoStageScores]:
        """One feature assembly and one ONNX Runtime call per scorer for all `requests`."""
        features, counts = assemble_request_feed(self.tables, [r.request.as_tuple() for r in requests], self.names)
        starts = np.cumsum([0, *counts[:-1]])
        prescores = self.prerank.run(features, counts)
        kept = [best_first(s, r.keep) for s, r in zip(prescores, requests)]
        rows = np.concatenate([start + k for start, k in zip(starts, kept)]) if kept else np.empty(0, np.int64)
        kept_features = {n: t if n in USER_SIDE else t[rows] for n, t in features.items()}
        rank_scores = self.rank.run(kept_features, [len(k) for k in kept])
        return [
            TwoStageScores(k.astype(np.int64), s[k], r) for k, s, r in zip(kept, prescores, rank_scores)
        ]
