"""The default rerank chain (`Settings.rerank_chain`, chosen by `export.choose_rerank`) is diverse where
the candidates allow it, and never answers short."""
from __future__ import annotations

import numpy as np

from cascade.diversity import distinct_categories
from cascade.rerank.base import RerankInput, apply_chain
from cascade.rerank.registry import build_chain
from cascade.rerank.similarity import unit_rows
from cascade.settings import Settings

K = 10
DEFAULT_CHAIN = Settings.model_fields["rerank_chain"].default_factory()  # the code's default, whatever the environment says


def _candidates(categories: np.ndarray, seed: int) -> RerankInput:
    """Rank's answer as the rerank sees it: best score first, embeddings that cluster by category."""
    rng = np.random.default_rng(seed)
    n = len(categories)
    centres = rng.normal(size=(int(categories.max()) + 1, 8))
    embeddings = centres[categories] + 0.3 * rng.normal(size=(n, 8))
    scores = np.sort(rng.uniform(0.2, 0.9, n))[::-1].astype(np.float32)
    return RerankInput(np.arange(n, dtype=np.int64), scores, categories, None, unit_rows(embeddings))


def _served(batch: RerankInput) -> np.ndarray:
    return batch.categories[apply_chain(build_chain(DEFAULT_CHAIN), batch, K)]


def test_one_dominant_category_still_leaves_room_for_four() -> None:
    # 50 candidates, the 45 best of one category: the case, 8.5 of 10 from one category
    categories = np.r_[np.zeros(45, np.int64), [1, 2, 3, 4, 5]]
    for seed in range(5):
        served = _served(_candidates(categories, seed))
        assert len(served) == K and distinct_categories(served) >= 4


def test_skewed_candidates_give_four_categories_wherever_they_hold_four() -> None:
    rng = np.random.default_rng(0)
    for seed in range(200):
        available = int(rng.integers(2, 8))
        shares = rng.dirichlet(np.full(available, 0.3))  # a few categories take most of the list
        categories = rng.choice(available, size=50, p=shares)
        served = _served(_candidates(categories, seed))
        assert len(served) == K
        assert distinct_categories(served) >= min(4, distinct_categories(categories)), (seed, categories.tolist())
