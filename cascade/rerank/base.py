"""What every rerank operator sees and returns, and how a chain of them composes."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class RerankInput:
    item_ids: np.ndarray  # int64 [n]
    scores: np.ndarray  # float32 [n]: the ranker's scores, higher is better
    categories: np.ndarray  # int64 [n]
    embeddings: np.ndarray | None  # float32 [n, d], or None where the caller has none

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        sizes = [len(self.scores), len(self.categories)]
        if self.embeddings is not None:
            sizes.append(len(self.embeddings))
        if any(size != n for size in sizes):
            raise ValueError(f"RerankInput: {n} item ids but field lengths {sizes}")

    def __len__(self) -> int:
        return len(self.item_ids)

    def take(self, index: np.ndarray) -> RerankInput:
        return RerankInput(
            self.item_ids[index],
            self.scores[index],
            self.categories[index],
            None if self.embeddings is None else self.embeddings[index],
        )


class RerankOperator(Protocol):
    def __call__(self, batch: RerankInput, k: int) -> np.ndarray:
        """int64 order: at most `k` distinct indices into `batch`, best first."""
        ...


def kept_in_order(keep: np.ndarray, k: int) -> np.ndarray:
    """The order of a filter: indices where `keep` is true, in input order, at most `k` of them.

    Filters may return fewer than `k`; the chain then carries on with what is left, and nothing
    is invented to fill the gap.
    """
    return np.flatnonzero(keep)[: max(0, k)].astype(np.int64)


def apply_chain(operators: Sequence[RerankOperator], batch: RerankInput, k: int) -> np.ndarray:
    """Run the operators in turn, each on the previous one's output; indices into the original batch.

    Only the last operator is asked for `k` items; the ones before it order (or filter) the whole
    list they are given, so a filter late in the chain never starves for want of candidates that
    an earlier operator cut (greedy diversifiers give the same top k either way: their order is
    built prefix by prefix). Each order is checked against the protocol here, so that a faulty
    operator fails loudly instead of repeating or inventing items. With no operators, the first
    `k` stand.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    order = np.arange(len(batch), dtype=np.int64)
    current = batch
    for position, operator in enumerate(operators):
        want = k if position == len(operators) - 1 else len(current)
        step = np.asarray(operator(current, want), dtype=np.int64)
        in_range = np.all((step >= 0) & (step < len(current)))
        if len(step) > want or len(np.unique(step)) != len(step) or not in_range:
            raise ValueError(f"rerank operator {operator!r} returned an invalid order {step.tolist()}")
        order = order[step]
        current = current.take(step)
    return order[:k]
