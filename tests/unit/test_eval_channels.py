"""Recall channels judged alone and merged at an equal budget (`export.eval_channels`), on hand-made lists."""
from __future__ import annotations

import numpy as np
import pytest

from cascade.recall.channels import ChannelSpec
from export.eval_channels import best_quota_split, channel_figures, scaled_quotas
from orchestrator.recall import RecallPlan


def test_quotas_scale_to_the_budget_in_proportion() -> None:
    assert scaled_quotas({"ann": 1000, "item_to_item": 200, "popular": 200, "explore": 0}, 200) == {
        "ann": 143, "item_to_item": 29, "popular": 28, "explore": 0,  # 142.86, 28.57, 28.57: one remainder rounds up
    }
    assert sum(scaled_quotas({"a": 1, "b": 1, "c": 1}, 2).values()) == 2
    assert scaled_quotas({"ann": 50, "popular": 20}, 200) == {"ann": 50, "popular": 20}  # under budget: as they are


def _ids(*items: int) -> tuple[np.ndarray, np.ndarray]:
    return np.array(items, np.int64), np.linspace(1.0, 0.0, len(items)).astype(np.float32)


def test_channels_are_judged_without_training_items_and_merged_with_scaled_quotas(monkeypatch) -> None:
    monkeypatch.setattr("export.eval_channels.CHANNEL_KS", (2,))
    monkeypatch.setattr("export.eval_channels.MULTI_CHANNEL_BUDGET", 2)
    monkeypatch.setattr("export.eval_channels.ANN_K", 2)
    plan = RecallPlan((ChannelSpec("ann"), ChannelSpec("popular")), 0, {"ann": 4, "popular": 4, "explore": 0}, 8, True)
    lists = [("ann", *_ids(9, 1, 2, 3)), ("popular", *_ids(9, 5, 6, 7))]
    figures = channel_figures([(plan, lists)], [np.array([9])], [{2, 5}])  # 9 was met in training
    assert figures["n_users"] == 1
    assert figures["channels"] == {"ann": {"recall@2": 0.5}, "popular": {"recall@2": 0.5}}  # [1, 2] and [5, 6]
    assert figures["multi_channel"]["quotas"] == {"ann": 1, "popular": 1, "explore": 0}
    assert figures["multi_channel"]["recall@2"] == pytest.approx(0.5)  # [1, 5]: ann's first, popular's first
    assert figures["ratios"]["multi_channel/ann"]["point"] == pytest.approx(1.0)
    assert figures["ratios"]["ann/popular"]["point"] == pytest.approx(1.0)


def test_the_best_split_in_hindsight_finds_the_quotas_that_recall_most() -> None:
    """Each channel holds one of the user's relevant items at its second place: only a split that
    gives both channels two slots reaches both."""
    unseen = [[("ann", *_ids(1, 2, 3, 4)), ("popular", *_ids(5, 6, 7, 8))]]
    quotas, per_user = best_quota_split(unseen, [{2, 6}], budget=4, step=1)
    assert quotas == {"ann": 2, "popular": 2}
    assert per_user.tolist() == [1.0]
    quotas, per_user = best_quota_split(unseen, [{3, 4}], budget=4, step=2)
    assert quotas == {"ann": 4, "popular": 0} and per_user.tolist() == [1.0]
