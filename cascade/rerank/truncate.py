"""Keep the first k items as they stand."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.rerank.base import RerankInput


@dataclass(frozen=True)
class TruncateToK:
    def __call__(self, batch: RerankInput, k: int) -> np.ndarray:
        return np.arange(max(0, min(k, len(batch))), dtype=np.int64)
