"""The baselines: better than chance on synthetic data, LightGBM's features blind to the future, and the
report section they make."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cascade.schema import Dataset, Interactions, Split, time_split
from export.baselines import (
    CAUSAL_FEATURES,
    Fitted,
    baseline_report,
    baselines_markdown,
    causal_features,
    one_hot_ids,
    popularity,
    summarise,
)
from export.synthetic import generate

SEED = 7


@pytest.fixture(scope="module")
def synthetic() -> tuple[Dataset, Split]:
    dataset = generate(n_users=300, n_items=300, n_interactions=40_000, n_categories=8, seed=SEED)
    return dataset, time_split(dataset.interactions, 0.1, 0.1)


@pytest.fixture(scope="module")
def section(synthetic: tuple[Dataset, Split]) -> dict[str, Any]:
    return baseline_report(*synthetic, seed=SEED, resamples=100)


def hand_dataset(rows: list[tuple[int, int, int, float]]) -> Dataset:
    """Two users, three items in two categories, and the (user, item, ts, label) rows given."""
    user, item, ts, label = (np.array(column) for column in zip(*rows))
    return Dataset("hand", np.array([[0, 1, 2], [3, 0, 1]]), np.array([0, 1, 1]), np.array([5.0, 7.0, 9.0], np.float32),
                   2, Interactions.sorted(user, item, ts, label)).validate()


HAND_ROWS = [(0, 0, 100, 1.0), (0, 1, 200, 0.0), (1, 0, 150, 1.0), (1, 2, 300, 0.0)]


def features_without(dataset: Dataset, extra: tuple[int, int, int, float]) -> np.ndarray:
    """causal_features of `dataset` with `extra` added to its log, less the row of `extra`."""
    grown = hand_dataset(HAND_ROWS + [extra])
    log = grown.interactions
    added = np.flatnonzero((log.user == extra[0]) & (log.item == extra[1]) & (log.ts == extra[2]))
    return np.delete(causal_features(grown, 0.5), added, axis=0)


def test_every_baseline_beats_chance_clearly_and_its_intervals_hold_its_point(section: dict[str, Any]) -> None:
    assert set(section["baselines"]) == {"popularity", "logistic_regression", "lightgbm"}
    for name, entry in section["baselines"].items():
        assert entry["auc"]["point"] > 0.6 and entry["auc"]["low"] > 0.55, name  # 0.61 to 0.69 when written
        for metric in ("auc", "gauc", "logloss"):
            assert entry[metric]["low"] <= entry[metric]["point"] <= entry[metric]["high"], (name, metric)
        assert entry["fit_s"] >= 0 and entry["chosen"]
    assert section["best"] in section["baselines"] and section["seed"] == SEED and section["resamples"] == 100


def test_the_section_counts_the_test_rows_and_may_take_a_subset_of_them(synthetic: tuple[Dataset, Split]) -> None:
    dataset, split = synthetic
    test_rows = np.flatnonzero(split.test)
    fitted = {"popularity": Fitted(popularity(dataset, split).scores, "", {}, 0.0)}
    whole = summarise(fitted, dataset, split, SEED, resamples=20)
    assert whole["n_rows"] == len(test_rows) and whole["n_users"] == len(np.unique(dataset.interactions.user[test_rows]))
    some = summarise(fitted, dataset, split, SEED, rows=test_rows[::3], resamples=20)
    assert some["n_rows"] == len(test_rows[::3])
    with pytest.raises(ValueError, match="test rows"):
        summarise(fitted, dataset, split, SEED, rows=np.flatnonzero(split.train)[:5], resamples=20)


def test_the_markdown_has_a_row_per_baseline_with_its_intervals(section: dict[str, Any]) -> None:
    lines = baselines_markdown(section)
    table = [line for line in lines if line.startswith("| ") and "[" in line and "CI" not in line]
    assert [line.split(" | ")[0][2:] for line in table] == list(section["baselines"])
    auc = section["baselines"]["lightgbm"]["auc"]
    assert f"{auc['point']:.4f} [{auc['low']:.4f}, {auc['high']:.4f}]" in table[-1]


def test_lightgbm_features_see_no_event_at_or_after_their_row() -> None:
    dataset = hand_dataset(HAND_ROWS)
    before = causal_features(dataset, 0.5)
    assert before.shape == (4, len(CAUSAL_FEATURES))
    # a later event of user 0 on item 0, and one in the same second as user 0's last row, change nothing
    for extra in [(0, 0, 400, 0.0), (0, 0, 200, 1.0), (1, 0, 300, 1.0)]:
        np.testing.assert_array_equal(features_without(dataset, extra), before)
    # an earlier one does: the check can see a change
    assert not np.array_equal(features_without(dataset, (1, 0, 120, 0.0)), before)


def test_lightgbm_features_by_hand() -> None:
    x = dict(zip(CAUSAL_FEATURES, causal_features(hand_dataset(HAND_ROWS), 0.5).T))
    # rows in (user, ts) order: (0,0,100,+) (0,1,200,-) (1,0,150,+) (1,2,300,-)
    assert x["user_events"].tolist() == [0, 1, 0, 1] and x["user_positives"].tolist() == [0, 1, 0, 1]
    assert x["item_events"].tolist() == [0, 0, 1, 0] and x["item_positives"].tolist() == [0, 0, 1, 0]
    np.testing.assert_array_equal(x["seconds_since_user_event"], [np.nan, 100, np.nan, 150])
    assert x["user_rate"][1] == pytest.approx((1 + 10 * 0.5) / (1 + 10))  # one positive, ten pseudo-events at 0.5
    assert x["item_category"].tolist() == [0, 1, 0, 1] and x["occupation"].tolist() == [2, 2, 1, 1]
    assert x["weekday"][0] == 3 and x["hour"][0] == 0  # 1970-01-01 00:01:40 was a Thursday


def test_one_hot_ids_put_user_item_and_category_in_their_own_columns() -> None:
    dataset = hand_dataset(HAND_ROWS)
    x = one_hot_ids(dataset).toarray()
    assert x.shape == (4, 2 + 3 + 2) and (x.sum(axis=1) == 3).all()
    assert np.flatnonzero(x[3]).tolist() == [1, 2 + 2, 2 + 3 + 1]  # user 1, item 2, category 1


def test_popularity_gives_an_item_unseen_in_training_the_global_rate() -> None:
    dataset = hand_dataset(HAND_ROWS)
    train = dataset.interactions.ts < 250
    split = Split(train, np.zeros_like(train), ~train)  # test: user 1's item 2, never seen in training
    assert popularity(dataset, split).scores.tolist() == pytest.approx([2 / 3])
