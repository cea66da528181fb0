"""What every rerank operator sees and returns, and how a chain of them composes."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cascade.rerank.similarity import unit_rows


@dataclass(frozen=True)
class RerankInput:
    item_ids: np.ndarray  # int64 [n]
    scores: np.ndarray  # float32 [n]: the ranker's scores, higher is better
    categories: np.ndarray  # int64 [n]
    embeddings: np.ndarray | None  # float32 [n, d], or None where the caller has none
    # float64 [n, d]: the same embeddings already scaled to unit length (`unit_rows`), for a caller
    # that normalises its catalogue once; the diversifiers then skip normalising per request.
    unit_embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        sizes = [len(self.scores), len(self.categories)]
        sizes += [len(e) for e in (self.embeddings, self.unit_embeddings) if e is not None]
        if any(size != n for size in sizes):
            raise ValueError(f"RerankInput: {n} item ids but field lengths {sizes}")

    def __len__(self) -> int:
        return len(self.item_ids)

    def unit(self) -> np.ndarray | None:
        """float64 [n, d] unit-length embeddings for cosine similarity, or None without embeddings."""
        if self.unit_embeddings is not None:
            return self.unit_embeddings
        return None if self.embeddings is None else unit_rows(self.embeddings)

    def category_codes(self) -> np.ndarray:
        """int64 [n]: each item's category as a dense code in [0, number of distinct categories)."""
        return np.unique(self.categories, return_inverse=True)[1].reshape(-1)

    def take(self, index: np.ndarray) -> RerankInput:
        return RerankInput(
            self.item_ids[index],
            self.scores[index],
            self.categories[index],
            None if self.embeddings is None else self.embeddings[index],
            None if self.unit_embeddings is None else self.unit_embeddings[index],
        )


class RerankOperator(Protocol):
    def __call__(self, batch: RerankInput, k: int) -> np.ndarray:
        """int64 order: at most `k` distinct indices into `batch`, best first.

        Asked for k, an operator returns the first k of the order it gives when asked for more
        (every operator here is a filter or builds its order greedily, prefix by prefix).
        """
        ...


def kept_in_order(keep: np.ndarray, k: int) -> np.ndarray:
    """The order of a filter: indices where `keep` is true, in input order, at most `k` of them.

    Filters may return fewer than `k`; the chain then carries on with what is left, and nothing
    is invented to fill the gap.
    """
    return np.flatnonzero(keep)[: max(0, k)].astype(np.int64)


def keeps_prefix(operator: RerankOperator) -> bool:
    """Whether the operator returns the first min(k, n) items as they stand (`truncate`)."""
    return getattr(operator, "keeps_prefix", False)


def _check_order(operator: RerankOperator, step: np.ndarray, want: int, n: int) -> None:
    """At most `want` distinct indices in [0, n); a mask count rather than a sort (`np.unique`)."""
    valid = len(step) <= want and (len(step) == 0 or (step.min() >= 0 and step.max() < n))
    if valid:
        used = np.zeros(n, dtype=bool)
        used[step] = True
        valid = np.count_nonzero(used) == len(step)
    if not valid:
        raise ValueError(f"rerank operator {operator!r} returned an invalid order {step.tolist()}")


def apply_chain(operators: Sequence[RerankOperator], batch: RerankInput, k: int) -> np.ndarray:
    """Run the operators in turn, each on the previous one's output; indices into the original batch.

    Only the last operator is asked for `k` items; the ones before it order (or filter) the whole
    list they are given, so a filter late in the chain never starves for want of candidates that
    an earlier operator cut (greedy diversifiers give the same top k either way: their order is
    built prefix by prefix). An operator followed only by prefix cuts (`truncate`) is asked for
    `k` as well, since the cuts keep its first k anyway: the default chain's MMR then stops after
    k picks instead of ordering all of its input. Each order is checked against the protocol here,
    so that a faulty operator fails loudly instead of repeating or inventing items. With no
    operators, the first `k` stand.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    cut_from = max((i for i, operator in enumerate(operators) if not keeps_prefix(operator)), default=0)
    order = np.arange(len(batch), dtype=np.int64)
    current = batch
    for position, operator in enumerate(operators):
        want = k if position >= cut_from else len(current)
        step = np.asarray(operator(current, want), dtype=np.int64)
        _check_order(operator, step, want, len(current))
        order = order[step]
        if position < len(operators) - 1:
            current = current.take(step)
    return order[:k]
