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


@pytest.fixture
def budget_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every K the figures use set to 2, so that hand-made lists of a few items fill them."""
    monkeypatch.setattr("export.eval_channels.CHANNEL_KS", (2,))
    monkeypatch.setattr("export.eval_channels.MULTI_CHANNEL_BUDGET", 2)
    monkeypatch.setattr("export.eval_channels.ANN_K", 2)


def _ids(*items: int) -> tuple[np.ndarray, np.ndarray]:
    return np.array(items, np.int64), np.linspace(1.0, 0.0, len(items)).astype(np.float32)


@pytest.mark.usefixtures("budget_of_two")
def test_channels_are_judged_without_training_items_and_merged_with_scaled_quotas() -> None:
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


@pytest.mark.usefixtures("budget_of_two")
def test_the_routing_ceiling_sends_each_user_to_the_channel_that_recalls_most_for_them() -> None:
    """One user's item is only in ANN's top 2, the other's only in popular's: each channel recalls half
    over the two users, a router that knew which channel to ask recalls everything. The second user
    has no training event."""
    plan = RecallPlan((ChannelSpec("ann"), ChannelSpec("popular")), 0, {"ann": 1, "popular": 1, "explore": 0}, 2, True)
    lists = [("ann", *_ids(1, 2, 3)), ("popular", *_ids(5, 6, 7))]
    figures = channel_figures([(plan, lists), (plan, lists)], [np.array([9]), np.array([], np.int64)], [{2}, {6}])
    assert figures["users_without_history"] == 1
    assert figures["channels"] == {"ann": {"recall@2": 0.5}, "popular": {"recall@2": 0.5}}
    assert figures["multi_channel"]["recall@2"] == 0.0  # [1, 5] holds neither
    assert figures["routing_ceiling"]["recall@2"] == 1.0


@pytest.mark.usefixtures("budget_of_two")
def test_oracle_lists_are_judged_beside_the_channels() -> None:
    plan = RecallPlan((ChannelSpec("ann"), ChannelSpec("popular")), 0, {"ann": 1, "popular": 1, "explore": 0}, 2, True)
    lists = [("ann", *_ids(1, 2, 3)), ("popular", *_ids(5, 6, 7))]
    oracle = [np.array([2, 6], np.int64)]
    figures = channel_figures([(plan, lists)], [np.array([], np.int64)], [{2, 6}], oracle=oracle)
    assert figures["oracle"] == {"recall@2": 1.0}
    assert figures["ratios"]["oracle/ann"]["point"] == pytest.approx(2.0)  # 1.0 over ann's 0.5
    assert "oracle" not in channel_figures([(plan, lists)], [np.array([], np.int64)], [{2, 6}])
