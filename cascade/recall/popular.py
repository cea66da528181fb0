"""The popular-items channel (and the cold-start fallback): most positives in training."""
from __future__ import annotations

import numpy as np


def popular_items(positives: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item ids by positive count (ties by id), with log1p(count) as the channel score."""
    order = np.lexsort((np.arange(len(positives)), -positives))[:k]
    return order.astype(np.int64), np.log1p(positives[order]).astype(np.float32)
