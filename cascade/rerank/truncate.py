"""Keep the first k items as they stand."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cascade.rerank.base import RerankInput


@dataclass(frozen=True)
class TruncateToK:
    keeps_prefix: ClassVar[bool] = True  # lets `apply_chain` ask the operator before it for k

    def __call__(self, batch: RerankInput, k: int) -> np.ndarray:
        return np.arange(max(0, min(k, len(batch))), dtype=np.int64)
