"""Which scorer versions the orchestrator may call: a ready pinned pipeline (and, where the scorer is a
model of its own, that version ready too)."""
from __future__ import annotations

import pytest

from cascade.triton.layout import lookalike_version, pinned_version, pipeline_name, two_stage_name, two_stage_versions
from orchestrator.experiments import unservable_pins
from orchestrator.memory_store import MemoryOperatorBoard
from orchestrator.versions import (
    ScorerVersions,
    VersionNotServable,
    has_scorer_model,
    ready_two_stage,
    servable_versions,
)


def test_gpu_layout_a_version_is_servable_when_it_and_its_pinned_ensemble_are_ready() -> None:
    index = [
        ("rank", 1, "READY"), ("rank", 2, "READY"), ("rank", 3, "UNAVAILABLE"),
        ("rank_pipeline_v1", 1, "READY"), ("rank_pipeline_v3", 1, "READY"),  # v2's pipeline not loaded yet
        ("prerank", 1, "READY"), ("prerank_pipeline_v1", 1, "UNLOADING"),
    ]
    assert has_scorer_model(index, "rank")
    assert servable_versions(index, "rank") == [1]
    assert servable_versions(index + [("rank_pipeline_v2", 1, "READY")], "rank") == [1, 2]
    assert servable_versions(index, "prerank") == []


def test_cpu_layout_a_version_is_servable_when_its_fused_pipeline_is_ready() -> None:
    """No standalone scorer model: the pinned pipeline carries its version's ONNX."""
    index = [
        ("rank_pipeline", 3, "READY"),  # the unpinned pipeline's versions are not pinned versions
        ("rank_pipeline_v1", 1, "READY"), ("rank_pipeline_v2", 1, "UNAVAILABLE"), ("rank_pipeline_v3", 1, "READY"),
        ("rank_pipeline_vx", 1, "READY"), ("prerank_pipeline_v4", 1, "READY"),
    ]
    assert not has_scorer_model(index, "rank")
    assert servable_versions(index, "rank") == [1, 3]
    assert servable_versions(index, "prerank") == [4]
    assert servable_versions([("rank_pipeline_v1", 1, "LOADING")], "rank") == []


def test_a_lookalike_version_is_servable_when_its_model_is_ready() -> None:
    index = [("lookalike_v1", 1, "READY"), ("lookalike_v2", 1, "LOADING"), ("lookalike_v3", 1, "READY"),
             ("lookalike_vx", 1, "READY"), ("rank_pipeline_v5", 1, "READY")]
    assert servable_versions(index, "lookalike") == [1, 3]
    assert [lookalike_version(m) for m in ("lookalike_v12", "lookalike", "lookalike_v", "rank_pipeline_v1")] == [12, None, None, None]
    assert unservable_pins([("a", "lookalike", 2), ("b", "lookalike", 3)], index) == ["arm 'a': lookalike version 2"]


def test_pinned_version_of_a_model_name() -> None:
    assert pinned_version("rank", "rank_pipeline_v12") == 12
    assert [pinned_version("rank", m) for m in ("rank_pipeline", "rank", "prerank_pipeline_v1", "rank_pipeline_v")] == [None] * 4


def test_pipeline_names() -> None:
    assert pipeline_name("rank") == "rank_pipeline" and pipeline_name("prerank", 12) == "prerank_pipeline_v12"
    with pytest.raises(ValueError, match="unknown scorer 'teacher'"):
        pipeline_name("teacher", 1)


def test_active_versions_start_from_the_manifest() -> None:
    versions = ScorerVersions({"prerank": 1, "rank": 3, "user_tower": 1})
    assert versions.active == {"prerank": 1, "rank": 3}
    assert versions.pipelines() == ["prerank_pipeline_v1", "rank_pipeline_v3"]


def test_two_stage_pairs_ready_in_the_index() -> None:
    index = [("two_stage_p1_r2", 1, "READY"), ("two_stage_p2_r2", 1, "LOADING"), ("two_stage_px_r1", 1, "READY"),
             ("rank_pipeline_v2", 1, "READY"), ("two_stage_p3_r3", 2, "READY")]
    assert ready_two_stage(index) == {(1, 2)}
    assert two_stage_name(1, 2) == "two_stage_p1_r2" and two_stage_versions("two_stage_p10_r2") == (10, 2)
    assert two_stage_versions("two_stage_p1") is None


class FakeTriton:
    """Model control over a repository of model names: `load` makes a model READY, or fails if absent."""

    def __init__(self, repository: set[str], loaded: set[str]) -> None:
        self.repository, self.ready, self.loads = repository, set(loaded), []

    async def load(self, model: str) -> None:
        self.loads.append(model)
        if model not in self.repository:
            raise RuntimeError(f"failed to load '{model}', no version is available")
        self.ready.add(model)

    async def loaded(self) -> list[tuple[str, int, str]]:
        return [(m, 1, "READY" if m in self.ready else "UNAVAILABLE") for m in sorted(self.repository)]


START = {"prerank_pipeline_v1", "rank_pipeline_v1", "two_stage_p1_r1"}


async def switch(repository: set[str]) -> tuple[ScorerVersions, FakeTriton, list]:
    triton, warmed = FakeTriton(repository, START), []
    versions = ScorerVersions({"prerank": 1, "rank": 1})
    await versions.discover(triton)
    assert versions.two_stage == {(1, 1)}
    live = versions.two_stage  # requests read this very set

    async def warm(at, two_stage):
        warmed.append((dict(at), two_stage))

    assert await versions.activate(triton, "rank", 2, warm) == 1
    assert versions.active == {"prerank": 1, "rank": 2} and versions.two_stage is live
    return versions, triton, warmed


async def test_a_switch_loads_and_warms_the_new_pairs_two_stage_model_before_traffic_moves() -> None:
    versions, triton, warmed = await switch(START | {"rank_pipeline_v2", "two_stage_p1_r2"})
    assert triton.loads == ["rank_pipeline_v2", "two_stage_p1_r2"]
    assert warmed == [({"prerank": 1, "rank": 2}, False), ({"prerank": 1, "rank": 2}, True)]
    assert versions.two_stage == {(1, 1), (1, 2)}


async def test_a_switch_without_the_pairs_two_stage_model_moves_to_two_calls() -> None:
    versions, triton, warmed = await switch(START | {"rank_pipeline_v2"})
    assert triton.loads == ["rank_pipeline_v2", "two_stage_p1_r2"]  # tried, absent
    assert warmed == [({"prerank": 1, "rank": 2}, False)]
    assert versions.two_stage == {(1, 1)}  # (1, 2) requests make two calls


async def test_a_failed_switch_changes_nothing() -> None:
    triton = FakeTriton(START, START)
    versions = ScorerVersions({"prerank": 1, "rank": 1})
    await versions.discover(triton)

    async def warm(at, two_stage):
        raise AssertionError("nothing to warm")

    with pytest.raises(VersionNotServable, match="could not load rank version 2"):
        await versions.activate(triton, "rank", 2, warm)
    assert versions.active == {"prerank": 1, "rank": 1} and versions.two_stage == {(1, 1)}


# --- shared versions: several processes, one board ----------------------------------------------


class BrokenBoard:
    async def read(self) -> dict[str, int]:
        raise ConnectionError("redis down")

    async def write(self, scorer: str, version: int) -> None:
        raise ConnectionError("redis down")


def warm_log(warmed: list):
    def warm_for(scorer: str):
        async def warm(at, two_stage):
            warmed.append((scorer, dict(at), two_stage))
        return warm
    return warm_for


async def test_a_switch_in_one_process_is_followed_by_the_others() -> None:
    board = MemoryOperatorBoard()
    triton = FakeTriton(START | {"rank_pipeline_v2", "two_stage_p1_r2"}, START)
    leader, follower = ScorerVersions({"prerank": 1, "rank": 1}, board), ScorerVersions({"prerank": 1, "rank": 1}, board)
    for v in (leader, follower):
        await v.discover(triton)
    warmed: list = []
    assert await follower.follow(triton, warm_log(warmed)) == [] and warmed == []  # nothing written yet

    await leader.activate(triton, "rank", 2, warm_log([])("rank"))
    assert board.versions == {"rank": 2} and follower.active == {"prerank": 1, "rank": 1}
    live = follower.active  # requests read this very dict
    assert await follower.follow(triton, warm_log(warmed)) == ["rank"]
    assert follower.active == {"prerank": 1, "rank": 2} and follower.active is live
    assert follower.two_stage == {(1, 1), (1, 2)}
    assert warmed == [("rank", {"prerank": 1, "rank": 2}, False), ("rank", {"prerank": 1, "rank": 2}, True)]
    assert await follower.follow(triton, warm_log(warmed)) == [] and len(warmed) == 2  # settled: no more work
    assert await leader.follow(triton, warm_log(warmed)) == []  # the leader is there already


async def test_a_shared_version_triton_does_not_serve_is_not_followed_until_it_does(caplog) -> None:
    board = MemoryOperatorBoard()
    await board.write("prerank", 3)
    triton = FakeTriton(START | {"prerank_pipeline_v3"}, START)
    follower = ScorerVersions({"prerank": 1, "rank": 1}, board)
    await follower.discover(triton)
    assert follower.active == {"prerank": 1, "rank": 1}  # at start: the board's version is not served
    for _ in range(3):
        assert await follower.follow(triton, warm_log([])) == []
    assert caplog.text.count("prerank version 3, which Triton does not serve") == 1  # logged once
    triton.ready.add("prerank_pipeline_v3")  # the switching process loaded it
    assert await follower.follow(triton, warm_log([])) == ["prerank"]
    assert follower.active == {"prerank": 3, "rank": 1} and follower.two_stage == {(1, 1)}  # no (3, 1) model: two calls


async def test_a_process_starting_after_a_switch_serves_the_shared_versions() -> None:
    board = MemoryOperatorBoard()
    await board.write("rank", 1)
    triton = FakeTriton(START | {"rank_pipeline_v2"}, START | {"rank_pipeline_v2"})
    late = ScorerVersions({"prerank": 1, "rank": 1}, board)
    await late.discover(triton)
    assert late.active == {"prerank": 1, "rank": 1}  # the board's 1, not the newest servable 2
    alone = ScorerVersions({"prerank": 1, "rank": 1})
    await alone.discover(triton)
    assert alone.active == {"prerank": 1, "rank": 2}  # no board: the newest servable


async def test_a_failed_warm_up_leaves_the_follower_where_it_was() -> None:
    board = MemoryOperatorBoard()
    await board.write("rank", 2)
    triton = FakeTriton(START | {"rank_pipeline_v2"}, START | {"rank_pipeline_v2"})
    follower = ScorerVersions({"prerank": 1, "rank": 1}, board)  # serving the manifest's versions

    def failing(scorer):
        async def warm(at, two_stage):
            raise RuntimeError("triton timed out")
        return warm

    with pytest.raises(RuntimeError, match="timed out"):
        await follower.follow(triton, failing)
    assert follower.active == {"prerank": 1, "rank": 1}


async def test_without_redis_a_switch_changes_nothing_and_a_start_takes_the_newest() -> None:
    triton = FakeTriton(START | {"rank_pipeline_v2"}, START)
    versions = ScorerVersions({"prerank": 1, "rank": 1}, BrokenBoard())
    await versions.discover(triton)
    assert versions.active == {"prerank": 1, "rank": 1}
    with pytest.raises(VersionNotServable, match="not shared with the other processes: redis down"):
        await versions.activate(triton, "rank", 2, warm_log([])("rank"))
    assert versions.active == {"prerank": 1, "rank": 1}
    assert await versions.follow(triton, warm_log([])) == []  # nothing readable: nothing to follow
