"""Feature assembly and one scorer in one process: raw requests in, scores out (no Triton import).

The CPU profile serves each pipeline as one Python-backend model built on `FusedScorer`
(`cascade.triton.fused_model`) instead of the ensemble feature_assembly -> scorer, which crossed two
Python stubs' shared memory per call. The scores are the ensemble's, bit for bit: the same
`cascade.features` code makes the user side once per request and the item side per candidate, the
request-shaped scorer reads the user side once per request (as the ensemble's scorer does, see
`cascade.triton.batching`), and ONNX Runtime scores all candidates of all requests in one call.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cascade.features import FeatureTables, assemble_request_feed
from cascade.triton.batching import FeatureRequest, parse_feature_request
from cascade.triton.sessions import cpu_session


class FusedScorer:
    """Scores raw requests (one user and its candidates each) with the scorer at `onnx_path`."""

    def __init__(
        self, tables: FeatureTables, onnx_path: Path, intra_op_threads: int = 1, initializers: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """`initializers`: graph initializers to override (`cascade.triton.sessions.cpu_session`)."""
        self.tables = tables
        self.session = cpu_session(onnx_path, intra_op_threads, initializers)
        self.input_names = frozenset(i.name for i in self.session.get_inputs())
        self.output_name = self.session.get_outputs()[0].name

    def parse(self, tensors: dict[str, np.ndarray]) -> FeatureRequest:
        """One request's raw tensors (batch dim 1, see `cascade.specs.REQUEST_INPUTS`) -> a request;
        raises ValueError naming the bad input."""
        return parse_feature_request(self.tables, tensors)

    def score(self, requests: list[FeatureRequest]) -> list[np.ndarray]:
        """One float32 [n_i] per request, from one ONNX Runtime call over all their candidates.

        Raises ValueError naming the input when an item id is outside the catalogue; `parse` checks
        each request on its own first, so a server rejects one bad request, not the batch."""
        features, counts = assemble_request_feed(self.tables, [r.as_tuple() for r in requests], self.input_names)
        return self.run(features, counts)

    def run(self, features: dict[str, np.ndarray], counts: list[int]) -> list[np.ndarray]:
        """Score an assembled feed (`cascade.features.assemble_request_feed`: `counts` candidates per
        request, one after another): one float32 [n_i] each. `features` may hold more tensors than the
        model reads."""
        if sum(counts) == 0:  # ONNX Runtime must not see a zero-row batch: the rank graph dies of SIGFPE
            return [np.zeros(0, np.float32) for _ in counts]
        scores = self.session.run([self.output_name], {n: features[n] for n in self.input_names})[0]
        return np.split(scores, np.cumsum(counts)[:-1])
