"""Deterministic id hashing (splitmix64), identical in every process; Python's hash() is salted."""
from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(values: np.ndarray, salt: int) -> np.ndarray:
    x = np.asarray(values, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(salt) * _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def hash_bucket(values: np.ndarray, salt: int, buckets: int) -> np.ndarray:
    """Map ids to 1..buckets-1; negative ids (padding, unknown) map to 0."""
    values = np.asarray(values, dtype=np.int64)
    hashed = (splitmix64(values, salt) % np.uint64(buckets - 1)).astype(np.int64) + 1
    return np.where(values < 0, 0, hashed)
