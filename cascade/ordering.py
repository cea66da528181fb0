"""The one rule for "the best `keep` by score", shared by the orchestrator and the two-stage model,
so a candidate kept in one Triton call is the one the two-call path would have kept."""
from __future__ import annotations

import numpy as np


def best_first(scores: np.ndarray, keep: int) -> np.ndarray:
    """Indices of the `keep` highest scores, highest first; ties keep their input order."""
    return np.argsort(-scores, kind="stable")[:keep]
