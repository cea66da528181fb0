"""The ranker's two objectives and how serving mixes them.

The student ranker has a click head (the log's `label`) and a second head (the log's
`second_label`): a generated conversion on synthetic data, a 5-star rating on MovieLens, a
dwell of at least CASCADE_DWELL_POSITIVE_MS on the served log. Its served score is
`sum_k w_k * sigmoid(logit_k)` with weights that sum to 1, so it stays a probability-like number
in [0, 1] and weights (1, 0) serve the click head alone.

The weights are an initializer of the exported graph (`HEAD_WEIGHTS`): the export bakes
CASCADE_RANK_HEAD_WEIGHTS in, and a serving process started with that variable set overrides the
initializer when it opens the model (`cascade.triton.sessions.cpu_session`), so changing the mix
needs a restart or a model reload, not a new export. The GPU profile's scorers (Triton's own
backends, the torch program) serve the weights the export baked in.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

HEAD_WEIGHTS = "head_weights"  # the initializer's name in the rank graph
HEADS = ("click", "second")
ENV = "CASCADE_RANK_HEAD_WEIGHTS"
DEFAULT = "1.0,0.3"


def parse_head_weights(text: str) -> tuple[float, float]:
    """'click,second' -> the two weights; raises ValueError unless they are two finite numbers >= 0,
    not both 0."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        weights = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"head weights must be two numbers 'click,second', got {text!r}") from None
    if len(weights) != len(HEADS) or not all(np.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"head weights must be two finite numbers >= 0, not both 0 ('click,second'), got {text!r}")
    return weights  # type: ignore[return-value]


def normalised(weights: tuple[float, float]) -> np.ndarray:
    """float32 [2] summing to 1: the initializer's value."""
    w = np.asarray(weights, dtype=np.float32)
    return w / w.sum()


def overrides_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, np.ndarray]:
    """{HEAD_WEIGHTS: weights} when CASCADE_RANK_HEAD_WEIGHTS is set (a serving process's override of
    the weights the export baked in), else nothing."""
    text = environ.get(ENV)
    return {} if text is None else {HEAD_WEIGHTS: normalised(parse_head_weights(text))}

