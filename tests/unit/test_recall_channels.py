"""The recall channel file: loader (valid / invalid), and the stage that merges channels with its quotas."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cascade.recall.channels import ChannelSpec, load_recall_config, parse_recall_config
from cascade.recall.item_to_item import ItemToItemIndex
from cascade.recall.popular import explore_new_items, trending_with_fallback
from cascade.settings import Settings
from orchestrator.recall import RecallChannels

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "recall.toml"

VALID = """
[[channel]]
name = "ann"
quota = 4
[[channel]]
name = "item_to_item"
quota = 2
recent = 3
decay = 0.5
[[channel]]
name = "popular"
quota = 3

[explore]
new_items = 1

[cold_start]
channels = ["popular"]
explore_new_items = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recall.toml"
    path.write_text(text)
    return path


def test_the_repository_file_loads() -> None:
    config = load_recall_config(REPO_CONFIG)
    assert [c.name for c in config.channels] == ["ann", "item_to_item", "popular"]
    assert config.cold_start_channels == ("popular",)


def test_valid_file(tmp_path: Path) -> None:
    config = load_recall_config(write(tmp_path, VALID))
    assert config.channels[1] == ChannelSpec("item_to_item", quota=2, recent=3, decay=0.5)
    assert config.quotas({}) == {"ann": 4, "item_to_item": 2, "popular": 3}
    assert (config.explore_new_items, config.cold_start_explore) == (1, 2)
    omitted = parse_recall_config({"channel": [{"name": "ann"}, {"name": "popular", "quota": 0}]})
    assert omitted.quotas({"ann": 300, "popular": 50}) == {"ann": 300, "popular": 0}


@pytest.mark.parametrize("text, message", [
    ("", "at least one \\[\\[channel\\]\\]"),
    ("[[channel]]\nname = 'nope'", "channel\\[0\\].name must be one of"),
    ("[[channel]]\nname = 'ann'\nquota = -1", "channel\\[0\\].quota must be an integer >= 0"),
    ("[[channel]]\nname = 'ann'\nquota = true", "channel\\[0\\].quota"),
    ("[[channel]]\nname = 'ann'\n[[channel]]\nname = 'ann'", "channel\\[1\\].name: channel 'ann' is listed twice"),
    ("[[channel]]\nname = 'item_to_item'\ndecay = 2.0", "channel\\[0\\].decay"),
    ("[[channel]]\nname = 'ann'\nqouta = 3", "unknown field\\(s\\) \\['qouta'\\]"),
    ("[[channel]]\nname = 'ann'\n[cold_start]\nchannels = ['popular']", "cold_start.channels must list configured"),
    ("[[channel]]\nname = 'ann'\n[explore]\nnew_items = -2", "explore.new_items"),
    ("[[channel]\nname = 'ann'", "invalid TOML"),
])
def test_invalid_files_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as err:
        load_recall_config(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        load_recall_config(tmp_path / "absent.toml")


def test_trending_topped_up_by_offline_list() -> None:
    ids, scores = trending_with_fallback(
        np.array([7, 3]), np.array([np.e, 1.0]), now=1_767_225_600, tau_s=10.0,
        fallback_ids=np.array([3, 1, 2]), fallback_scores=np.array([9.0, 8.0, 7.0], np.float32), k=4,
    )
    assert ids.tolist() == [7, 3, 1, 2]
    assert scores.tolist() == pytest.approx([1.0, 0.0, 8.0, 7.0])  # log of the decayed value at the epoch


def test_explore_is_reproducible_per_seed() -> None:
    new = np.arange(100, 200)
    a, scores = explore_new_items(new, 5, seed=3)
    assert a.tolist() == explore_new_items(new, 5, seed=3)[0].tolist() and len(set(a.tolist())) == 5
    assert set(a.tolist()) <= set(new.tolist()) and scores.tolist() == [0.0] * 5
    assert explore_new_items(new[:2], 5, seed=3)[0].size == 2


class FakeAnn:
    def search_many(self, user_ids, histories, timestamps, k):
        ids = np.arange(10, dtype=np.int64)[:k]  # ANN always answers 0..9
        return [(ids, np.linspace(1, 0, len(ids)).astype(np.float32)) for _ in user_ids]


def stage(tmp_path: Path, text: str = VALID, ann: FakeAnn | None = None, trending: bool = True) -> RecallChannels:
    n_items = 30
    positives = np.zeros(n_items, np.int64)
    positives[:20] = np.arange(20, 0, -1)  # items 20..29 have no training positive
    tables = SimpleNamespace(item_positives=positives, n_items=n_items, config=SimpleNamespace(history_len=4))
    neighbours = np.full((n_items, 3), -1, np.int64)
    neighbours[5] = [11, 12, 13]
    i2i = ItemToItemIndex(neighbours, np.where(neighbours >= 0, 1.0, 0.0).astype(np.float32))
    settings = Settings(recall_config=write(tmp_path, text), recall_ann_k=100, recall_popular_k=100)
    pop = np.arange(20, dtype=np.int64)
    return RecallChannels(
        settings, tables, ann or FakeAnn(), i2i, pop, np.linspace(5, 1, 20).astype(np.float32), trending=trending,
    )


def counts(cands) -> dict[str, int]:
    return {n: int((cands.channels == i).sum()) for i, n in enumerate(cands.channel_names)}


async def test_known_user_gets_every_channel_within_its_quota(tmp_path: Path) -> None:
    cands = await stage(tmp_path).recall(1, np.array([-1, -1, 2, 5]), timestamp=0)
    assert counts(cands) == {"ann": 4, "item_to_item": 2, "popular": 3, "explore": 1}
    assert cands.item_ids[:6].tolist() == [0, 1, 2, 3, 11, 12]
    assert cands.item_ids[6:9].tolist() == [4, 5, 6]  # popular skips what ANN took
    assert 20 <= cands.item_ids[9] < 30
    assert len(set(cands.item_ids.tolist())) == len(cands)


async def test_cold_start_user_gets_cold_start_channels_and_new_items(tmp_path: Path) -> None:
    cands = await stage(tmp_path).recall(10_000, None, timestamp=0)
    assert cands.channel_names == ("popular", "explore")
    assert counts(cands) == {"popular": 3, "explore": 2}
    assert all(20 <= i < 30 for i in cands.item_ids[3:])
    again = await stage(tmp_path).recall(10_000, None, timestamp=0)
    assert again.item_ids.tolist() == cands.item_ids.tolist()  # reproducible per user (and day)


async def test_reload_swaps_the_config_and_a_bad_file_keeps_the_old(tmp_path: Path) -> None:
    recall = stage(tmp_path)
    write(tmp_path, VALID.replace("quota = 3", "quota = 0").replace("new_items = 1", "new_items = 0"))
    recall.reload()
    assert counts(await recall.recall(1, np.array([-1, -1, 2, 5]), 0)) == {"ann": 4, "item_to_item": 2}
    write(tmp_path, "[[channel]]\nname = 'bogus'")
    with pytest.raises(ValueError, match="bogus"):
        recall.reload()
    assert recall.describe()["channels"][2] == {"name": "popular", "quota": 0}


class BlockingAnn(FakeAnn):
    """Blocks inside search until the event loop releases it: proves ANN runs off the loop's thread."""

    def __init__(self) -> None:
        self.entered, self.released = threading.Event(), threading.Event()

    def search_many(self, user_ids, histories, timestamps, k):
        self.entered.set()
        if not self.released.wait(5):
            raise AssertionError("the event loop was blocked while the ANN channel searched")
        return super().search_many(user_ids, histories, timestamps, k)


async def test_the_ann_channel_runs_beside_the_event_loop(tmp_path: Path) -> None:
    ann = BlockingAnn()
    recall = stage(tmp_path, ann=ann)
    task = asyncio.create_task(recall.recall(1, np.array([-1, -1, 2, 5]), 0))
    assert await asyncio.to_thread(ann.entered.wait, 5)
    ann.released.set()  # runs on the event loop while the search is still inside it
    assert counts(await task) == {"ann": 4, "item_to_item": 2, "popular": 3, "explore": 1}
    await recall.close()


class RecordingAnn(FakeAnn):
    def __init__(self) -> None:
        self.calls: list[tuple[list[int], int]] = []

    def search_many(self, user_ids, histories, timestamps, k):
        self.calls.append((user_ids.tolist(), k))
        return super().search_many(user_ids, histories, timestamps, k)


async def test_a_cold_start_user_with_ann_configured_searches_from_an_empty_history(tmp_path: Path) -> None:
    ann = RecordingAnn()
    recall = stage(tmp_path, VALID.replace('channels = ["popular"]', 'channels = ["ann", "popular"]'), ann=ann)
    cands = await recall.recall(10_000, None, timestamp=0)
    assert counts(cands) == {"ann": 4, "popular": 3, "explore": 2}
    assert ann.calls == [([10_000], 4)]
    await recall.close()


async def test_concurrent_requests_share_ann_batches_and_get_their_own_answers(tmp_path: Path) -> None:
    ann = RecordingAnn()
    recall = stage(tmp_path, ann=ann)
    alone = await recall.recall(1, np.array([-1, -1, 2, 5]), 0)
    together = await asyncio.gather(*(recall.recall(u, np.array([-1, -1, 2, 5]), 0) for u in range(1, 7)))
    assert [c.item_ids.tolist() for c in together[:1]] == [alone.item_ids.tolist()]
    assert sum(len(users) for users, _ in ann.calls) == 7 and len(ann.calls) < 7  # batched
    await recall.close()


async def test_plans_are_derived_once_per_config_and_swapped_on_reload(tmp_path: Path) -> None:
    recall = stage(tmp_path)
    plan = recall.snapshot.known
    assert [s.name for s in plan.channels] == ["ann", "item_to_item", "popular"]
    assert plan.quotas == {"ann": 4, "item_to_item": 2, "popular": 3, "explore": 1} and plan.limit == 10
    cold = recall.snapshot.cold
    assert [s.name for s in cold.channels] == ["popular"] and cold.limit == 5
    write(tmp_path, VALID.replace("quota = 4", "quota = 0"))
    recall.reload()
    assert [s.name for s in recall.snapshot.known.channels] == ["item_to_item", "popular"]


async def test_channel_lists_are_what_recall_merges(tmp_path: Path) -> None:
    recall = stage(tmp_path)
    history = np.array([-1, -1, 2, 5])
    plan, lists = await recall.channel_lists(1, history, 0)
    assert [name for name, _, _ in lists] == ["ann", "item_to_item", "popular", "explore"]
    assert lists[1][1].tolist() == [11, 12, 13]  # the channel's whole list, before the quota cuts it to 2
    merged, served = plan.merge(lists), await recall.recall(1, history, 0)
    assert merged.item_ids.tolist() == served.item_ids.tolist() and merged.channel_names == served.channel_names
    await recall.close()


async def test_without_trending_the_popular_channel_keeps_the_offline_list(tmp_path: Path) -> None:
    refreshed = []

    async def refresh() -> None:
        refreshed.append(True)

    offline, served = stage(tmp_path, trending=False), stage(tmp_path)
    for channels in (offline, served):
        channels.refresh_trending = refresh  # stands in for the Redis read
        await channels.recall(1, np.array([-1, -1, 2, 5]), 0)
        await asyncio.sleep(0)  # a scheduled refresh would run now
    assert refreshed == [True]  # the served channels' only
    assert offline.popular[0].tolist() == list(range(20))
    await offline.close()
    await served.close()
