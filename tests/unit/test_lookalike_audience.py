from __future__ import annotations

import numpy as np
import pytest

from cascade.lookalike.audience import Blend, Likers, candidate_pool, demographic_similarity, rule_candidates


def test_blend_is_the_design_formula_within_the_scale_and_similarity_beyond() -> None:
    blend = Blend()
    sim, km = np.array([0.5, 0.5, 0.9, 0.2]), np.array([0.0, 2.5, 5.0, 40.0])
    np.testing.assert_allclose(blend.scores(sim, km), [0.6 + 0.2, 0.6 * 0.5 + 0.2, 0.36, 0.08], rtol=1e-6)
    np.testing.assert_array_equal(blend.scores(sim, None), sim.astype(np.float32))
    np.testing.assert_allclose(Blend(0.0, 1.0).scores(sim, km), sim, rtol=1e-6)


@pytest.mark.parametrize("bad", [dict(distance_weight=-1.0), dict(distance_weight=0.0, similarity_weight=0.0), dict(scale_km=0.0)])
def test_blend_refuses_meaningless_weights(bad) -> None:
    with pytest.raises(ValueError):
        Blend(**bad)


def test_likers_are_each_items_users_once_latest_last() -> None:
    likers = Likers.of(items=np.array([1, 1, 1, 0, 1]), users=np.array([5, 3, 5, 2, 9]), timestamps=np.array([10, 20, 5, 1, 30]),
                       n_items=3)
    assert likers.of_item(1, 10).tolist() == [5, 3, 9]  # user 5 at its first like (5), then 3 (20), then 9 (30)
    assert likers.of_item(1, 2).tolist() == [3, 9]
    assert likers.of_item(0, 10).tolist() == [2] and likers.of_item(2, 10).tolist() == []


def test_the_pool_puts_similar_nearby_users_first_then_the_nearest_others() -> None:
    similar, nearby, exclude = np.array([7, 1, 8, 3]), np.array([3, 4, 7, 5, 9]), np.array([9])
    assert candidate_pool(similar, None, exclude, 10).tolist() == [7, 1, 8, 3]
    assert candidate_pool(similar, nearby, exclude, 10).tolist() == [7, 3, 4, 5]
    assert candidate_pool(similar, nearby, np.array([7]), 3).tolist() == [3, 4, 5]


def test_demographic_rules_match_the_seeds_most_common_values() -> None:
    seeds = np.array([[1, 2, 3, 90], [1, 2, 4, 91], [1, 5, 3, 92]])  # modes 1, 2, 3 (the 4th column is a place)
    users = np.array([[1, 2, 3, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 2, 0, 0]])
    np.testing.assert_allclose(demographic_similarity(seeds, users), [1.0, 1 / 3, 0.0, 2 / 3], rtol=1e-6)
    activity = np.array([[0.0], [5.0], [1.0], [0.0]])
    users_out, sim = rule_candidates(seeds, users, activity, None, np.array([0]), 2)
    assert users_out.tolist() == [3, 1] and sim.tolist() == pytest.approx([2 / 3, 1 / 3])
    users_out, _ = rule_candidates(seeds, users, activity, np.array([2, 1]), np.array([], np.int64), 5)
    assert users_out.tolist() == [1, 2]
