"""The experiments in force, shared through the operator board: a change made through one process is
followed by the others, survives a restart, and a malformed board value changes nothing. In memory:
two `ContextFactory`s (two processes) over one `MemoryOperatorBoard`."""
from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace

import pytest

from cascade.experiments import experiments_json, parse_experiments
from cascade.settings import Settings
from orchestrator.clients.errors import BackendUnavailable
from orchestrator.context import ContextFactory
from orchestrator.experiments import SharedExperiments, experiments_text, parse_experiments_text, pins, unservable_pins
from orchestrator.memory_store import MemoryOperatorBoard, MemoryUserStore
from orchestrator.metrics import FunnelMetrics
from orchestrator.service import FunnelService
from orchestrator.versions import VersionNotServable

VERSIONS = {"prerank": 1, "rank": 1}
ENV = [{"name": "from_env", "arms": [{"name": "only", "weight": 1}]}]
SHARED = [{"name": "shared_ab", "arms": [
    {"name": "a", "weight": 1, "rerank_chain": [{"name": "truncate"}], "model_versions": {"rank": 2}},
    {"name": "b", "weight": 3},
]}]
INDEX = [("prerank_pipeline_v1", 1, "READY"), ("rank_pipeline_v1", 1, "READY"), ("rank_pipeline_v2", 1, "READY")]


class FakeTriton:
    def __init__(self, index=INDEX) -> None:
        self.index, self.asked = index, 0

    async def loaded(self) -> list[tuple[str, int, str]]:
        self.asked += 1
        return self.index


class BrokenBoard(MemoryOperatorBoard):
    async def experiments(self) -> str | None:
        raise ConnectionError("redis down")

    async def write_experiments(self, text: str) -> None:
        raise ConnectionError("redis down")


def process(board: MemoryOperatorBoard | None, experiments=ENV) -> SharedExperiments:
    """One orchestrator process's experiments, started from `experiments` as CASCADE_EXPERIMENTS."""
    settings = Settings(rerank_chain=[{"name": "mmr", "lam": 0.5}, {"name": "truncate"}], experiments=experiments)
    return SharedExperiments(ContextFactory(settings, VERSIONS), board)


def arms_of(shared: SharedExperiments, users=range(40)) -> set[tuple[str | None, str]]:
    """(experiment, arm) of the requests of `users`."""
    return {(ctx.experiment, ctx.arm) for ctx in (shared.contexts.build(u, 5, 0) for u in users)}


def test_the_board_text_reads_back_as_the_same_experiments() -> None:
    experiments = parse_experiments(SHARED)
    assert experiments_json(experiments) == SHARED
    assert parse_experiments_text(experiments_text(experiments)) == experiments
    assert experiments_text(parse_experiments(json.loads(json.dumps(SHARED, indent=2)))) == experiments_text(experiments)
    with pytest.raises(ValueError, match="Expecting property name"):
        parse_experiments_text("{not json")
    with pytest.raises(ValueError, match="must be a list of experiments"):
        parse_experiments_text('{"name": "e"}')


def test_pins_of_the_experiment_in_force_that_triton_does_not_serve() -> None:
    experiments = parse_experiments(SHARED + [{"name": "later", "arms": [{"name": "x", "weight": 1, "model_versions": {"rank": 9}}]}])
    assert pins(experiments) == [("a", "rank", 2)]  # only the first experiment is in force
    assert unservable_pins(pins(experiments), INDEX) == []
    assert unservable_pins(pins(experiments), INDEX[:2]) == ["arm 'a': rank version 2"]
    assert pins([]) == []


async def test_a_change_through_one_process_is_followed_by_the_other() -> None:
    board = MemoryOperatorBoard()
    one, other = process(board), process(board)
    for p in (one, other):
        await p.discover()
    assert await other.follow() is False  # nothing written: the environment's stand
    assert arms_of(other) == {("from_env", "only")} and other.in_force.source == "environment"
    in_force = await one.change(FakeTriton(), parse_experiments(SHARED))
    assert in_force.source == "shared" and experiments_json(in_force.experiments) == SHARED
    assert json.loads(board.experiments_text) == SHARED
    assert arms_of(one) == {("shared_ab", "a"), ("shared_ab", "b")}
    assert arms_of(other) == {("from_env", "only")}  # until it polls
    assert await other.follow() is True
    assert arms_of(other) == arms_of(one) and other.in_force.source == "shared"
    assert other.contexts.pinned_versions("rank") == [2] and other.contexts.pinned_versions("prerank") == []
    ctx = next(c for c in (other.contexts.build(u, 5, 0) for u in range(40)) if c.arm == "a")
    assert dict(ctx.versions) == {"prerank": 1, "rank": 2} and len(ctx.chain) == 1  # the arm's own chain
    assert await other.follow() is False and await one.follow() is False  # settled


async def test_an_empty_list_means_no_experiments_and_an_absent_one_the_environment() -> None:
    board = MemoryOperatorBoard()
    one, other = process(board), process(board)
    await one.change(FakeTriton(), [])
    assert await other.follow() is True
    assert arms_of(other) == {(None, "none")} and other.in_force.source == "shared" and board.experiments_text == "[]"
    board.experiments_text = None  # the key deleted: back to CASCADE_EXPERIMENTS
    assert await other.follow() is True
    assert arms_of(other) == {("from_env", "only")} and other.in_force.source == "environment"


async def test_a_request_keeps_the_arm_it_started_with() -> None:
    shared = process(MemoryOperatorBoard())
    before = shared.contexts.build(7, 5, 0)
    await shared.change(FakeTriton(), parse_experiments(SHARED))
    assert (before.experiment, before.arm) == ("from_env", "only")  # its context was built whole, once


async def test_a_restarted_process_takes_the_board_over_the_environment() -> None:
    board = MemoryOperatorBoard()
    await process(board).change(FakeTriton(), parse_experiments(SHARED))
    restarted = process(board)
    assert restarted.in_force.source == "environment"  # before start-up reads the board
    await restarted.discover()
    assert restarted.in_force.source == "shared" and arms_of(restarted) == {("shared_ab", "a"), ("shared_ab", "b")}
    assert await restarted.follow() is False


async def test_a_malformed_board_value_is_logged_once_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    board = MemoryOperatorBoard()
    board.experiments_text = '[{"name": "e", "arms": []}]'
    shared = process(board)
    with caplog.at_level(logging.WARNING, logger="cascade.orchestrator"):
        await shared.discover()  # at start
        assert arms_of(shared) == {("from_env", "only")} and shared.in_force.source == "environment"
        await shared.change(FakeTriton(), parse_experiments(SHARED))
        board.experiments_text = "{not json"  # then while following
        assert await shared.follow() is False and await shared.follow() is False
    assert arms_of(shared) == {("shared_ab", "a"), ("shared_ab", "b")}  # what was in force stays
    problems = [r.getMessage() for r in caplog.records if "not valid" in r.getMessage()]
    assert len(problems) == 2 and "arms must be a non-empty list" in problems[0] and "Expecting" in problems[1]


async def test_a_pinned_version_triton_cannot_serve_changes_nothing() -> None:
    board, triton = MemoryOperatorBoard(), FakeTriton(INDEX[:2])
    shared = process(board)
    with pytest.raises(VersionNotServable, match="arm 'a': rank version 2"):
        await shared.change(triton, parse_experiments(SHARED))
    assert board.experiments_text is None and arms_of(shared) == {("from_env", "only")}
    await shared.change(triton, parse_experiments([{"name": "e", "arms": [{"name": "x", "weight": 1}]}]))
    assert triton.asked == 1  # Triton is asked only when an arm pins a version


async def test_without_redis_a_change_changes_nothing_and_a_start_keeps_the_environment() -> None:
    shared = process(BrokenBoard())
    await shared.discover()
    assert arms_of(shared) == {("from_env", "only")}
    with pytest.raises(BackendUnavailable, match="redis: experiments not shared with the other processes: redis down"):
        await shared.change(FakeTriton(), parse_experiments(SHARED))
    assert arms_of(shared) == {("from_env", "only")} and shared.in_force.source == "environment"
    with pytest.raises(ConnectionError):
        await shared.follow()  # the follow loop logs it and polls again


async def test_without_a_board_a_change_is_this_process_alone() -> None:
    shared = process(None)
    await shared.discover()
    await shared.change(FakeTriton(), parse_experiments(SHARED))
    assert arms_of(shared) == {("shared_ab", "a"), ("shared_ab", "b")} and await shared.follow() is False


class DownTriton:
    async def loaded(self) -> list[tuple[str, int, str]]:
        raise ConnectionError("triton down")


async def test_the_follow_loop_takes_a_change_within_a_poll_even_with_triton_down() -> None:
    """`FunnelService.follow_shared`: the experiments are followed on their own, so a scorer-version
    poll that fails (Triton down) does not hold them back."""
    board = MemoryOperatorBoard()
    settings = Settings(rerank_chain=[{"name": "truncate"}], experiments=ENV, versions_poll_s=0.02)
    resources = SimpleNamespace(manifest=SimpleNamespace(model_versions=VERSIONS), channels=None)
    follower = FunnelService(settings, resources, DownTriton(), MemoryUserStore(), FunnelMetrics(), board)
    await board.write("rank", 2)  # a version switch the follower cannot check: its Triton is down
    loop = asyncio.create_task(follower.follow_shared())
    try:
        await process(board).change(FakeTriton(), parse_experiments(SHARED))
        async with asyncio.timeout(1.0):
            while follower.experiments.in_force.source != "shared":
                await asyncio.sleep(0.01)
    finally:
        loop.cancel()
    assert arms_of(follower.experiments) == {("shared_ab", "a"), ("shared_ab", "b")}
    assert follower.pinned_versions("rank") == [2] and follower.versions.active == VERSIONS
