"""The oracle recall list on synthetic data (`export.eval_oracle`) and the hidden model it reads
(`export.synthetic.simulate`)."""
from __future__ import annotations

import numpy as np
import pytest

from cascade.metrics import recall_per_user
from cascade.recall.popular import popular_items
from cascade.schema import time_split
from cascade.settings import Settings
from export.eval_oracle import hidden_model, oracle_lists, positive_probability
from export.eval_retrieval import held_out_users
from export.synthetic import Simulation, generate, simulate

SIZES = dict(n_users=300, n_items=500, n_interactions=30_000, n_categories=8)


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return simulate(**SIZES, seed=3)


def test_simulate_draws_the_dataset_generate_draws(simulation: Simulation) -> None:
    log, again = simulation.dataset.interactions, generate(**SIZES, seed=3).interactions
    for name in ("user", "item", "ts", "label", "second_label"):
        np.testing.assert_array_equal(getattr(log, name), getattr(again, name), err_msg=name)


def test_each_user_changes_interest_once_in_log_order(simulation: Simulation) -> None:
    log, current = simulation.dataset.interactions, simulation.hidden.current
    assert current.shape == log.user.shape
    same_user = log.user[1:] == log.user[:-1]
    changes = np.bincount(log.user[1:][same_user & (current[1:] != current[:-1])], minlength=SIZES["n_users"])
    assert changes.max() == 1 and changes.mean() > 0.8  # switches between 30 % and 70 % of every timeline


def test_the_hidden_model_expects_as_many_positives_as_the_log_holds(simulation: Simulation) -> None:
    """Summed over users, the oracle's probabilities of each unseen item being a held-out positive
    match the held-out positives drawn: the oracle models the generator's impressions and clicks."""
    log, hidden = simulation.dataset.interactions, simulation.hidden
    train = time_split(log, 0.1, 0.1).train
    held = held_out_users(log, train, SIZES["n_users"])
    bounds = np.searchsorted(log.user, np.arange(SIZES["n_users"] + 1))
    expected, drawn = 0.0, 0
    for user in range(SIZES["n_users"]):
        rows = np.arange(bounds[user], bounds[user + 1])
        held_rows, seen = rows[~train[rows]], np.unique(log.item[rows[train[rows]]])
        probability = positive_probability(hidden, user, log.ts[held_rows], hidden.current[held_rows])
        assert probability.shape == (SIZES["n_items"],) and ((probability >= 0) & (probability <= 1)).all()
        probability[seen] = 0.0
        expected += probability.sum()
        drawn += len(set(log.item[held_rows][log.label[held_rows] > 0.5].tolist()) - set(seen.tolist()))
    assert drawn == sum(len(r) for r in held.relevant) > 300
    assert expected == pytest.approx(drawn, rel=0.08)


def test_oracle_lists_recall_more_than_popularity_and_exclude_training_items(simulation: Simulation) -> None:
    log, hidden = simulation.dataset.interactions, simulation.hidden
    train = time_split(log, 0.1, 0.1).train
    held = held_out_users(log, train, SIZES["n_users"])
    lists = oracle_lists(hidden, log, train, held, 50)
    assert len(lists) == len(held) and all(len(ids) == 50 for ids in lists)
    assert not any(np.isin(ids, seen).any() for ids, seen in zip(lists, held.train_items))
    popular = popular_items(np.bincount(log.item[train & (log.label > 0.5)], minlength=SIZES["n_items"]), 500)[0]
    popular_lists = [popular[~np.isin(popular, seen)][:50] for seen in held.train_items]
    oracle_recall = np.nanmean(recall_per_user(lists, held.relevant, 50))
    popular_recall = np.nanmean(recall_per_user(popular_lists, held.relevant, 50))
    assert oracle_recall > 1.2 * popular_recall


def test_the_hidden_model_is_refused_for_another_log(simulation: Simulation) -> None:
    settings = Settings(**SIZES, seed=3)
    assert hidden_model(settings, simulation.dataset.interactions).n_categories == SIZES["n_categories"]
    with pytest.raises(ValueError, match="another size or seed"):
        hidden_model(settings.model_copy(update={"seed": 4}), simulation.dataset.interactions)
