"""Diversity of recommended lists (`cascade.diversity`), on hand-made lists."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cascade.diversity import (
    category_coverage,
    distinct_categories,
    intra_list_diversity,
    largest_category_share,
    share_reaching,
)
from cascade.rerank.similarity import unit_rows


def test_distinct_categories_and_the_largest_share() -> None:
    categories = np.array([3, 3, 1, 3, 7, 3, 3, 3, 3, 1])
    assert distinct_categories(categories) == 3
    assert largest_category_share(categories) == pytest.approx(0.7)
    assert distinct_categories(np.arange(10)) == 10 and largest_category_share(np.arange(10)) == pytest.approx(0.1)
    assert distinct_categories(np.array([], np.int64)) == 0 and math.isnan(largest_category_share(np.array([], np.int64)))


def test_intra_list_diversity_is_the_mean_pairwise_cosine_distance() -> None:
    same = unit_rows(np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]))
    assert intra_list_diversity(same) == pytest.approx(0.0)
    orthogonal = unit_rows(np.eye(3))
    assert intra_list_diversity(orthogonal) == pytest.approx(1.0)
    opposite = unit_rows(np.array([[1.0, 0.0], [-1.0, 0.0]]))
    assert intra_list_diversity(opposite) == pytest.approx(2.0)
    # pairs (a, b) 1 - 0, (a, c) 1 - 1/sqrt(2), (b, c) 1 - 1/sqrt(2)
    mixed = unit_rows(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    assert intra_list_diversity(mixed) == pytest.approx((1.0 + 2 * (1 - 2**-0.5)) / 3)
    assert math.isnan(intra_list_diversity(unit_rows(np.ones((1, 4)))))


def test_category_coverage_counts_categories_shown_to_anyone() -> None:
    lists = [np.array([0, 0, 1]), np.array([1, 4]), np.array([4])]
    assert category_coverage(lists, 10) == pytest.approx(0.3)
    assert category_coverage([], 10) == 0.0 and math.isnan(category_coverage(lists, 0))


def test_share_reaching_counts_only_lists_whose_candidates_allowed_it() -> None:
    distinct = np.array([4, 3, 2, 5])
    available = np.array([6, 4, 2, 5])  # the third list's candidates held 2 categories: not counted
    assert share_reaching(distinct, available, 4) == pytest.approx(2 / 3)
    assert math.isnan(share_reaching(distinct, np.array([1, 2, 3, 3]), 4))
