"""Deadline arithmetic (orchestrator.deadlines) and the settings that configure it."""
from __future__ import annotations

import pytest

from cascade.settings import DEFAULT_STAGE_BUDGETS_MS, SettingsError, load_settings
from orchestrator.deadlines import DeadlinePlan, stage_allowance

MS = 1e-3


@pytest.fixture(autouse=True)
def no_deadline_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CASCADE_REQUEST_DEADLINE_MS", "CASCADE_STAGE_BUDGETS_MS", "CASCADE_DEADLINE_SLACK"):
        monkeypatch.delenv(name, raising=False)


def test_slack_is_what_the_deadline_has_beyond_the_later_stages_budgets() -> None:
    # 4 ms in, 46 left; the stages after this one are owed 16: this 8 ms stage may take 30
    assert stage_allowance(8 * MS, 16 * MS, 4 * MS, 50 * MS, slack=True) == pytest.approx(30 * MS)
    assert stage_allowance(8 * MS, 16 * MS, 4 * MS, 50 * MS, slack=False) == pytest.approx(8 * MS)


def test_an_earlier_overrun_does_not_cut_the_budget_only_the_total_does() -> None:
    assert stage_allowance(8 * MS, 16 * MS, 30 * MS, 50 * MS, slack=True) == pytest.approx(8 * MS)
    assert stage_allowance(8 * MS, 16 * MS, 45 * MS, 50 * MS, slack=True) == pytest.approx(5 * MS)
    assert stage_allowance(8 * MS, 16 * MS, 50 * MS, 50 * MS, slack=True) == 0.0
    assert stage_allowance(8 * MS, 16 * MS, 60 * MS, 50 * MS, slack=True) == 0.0
    assert stage_allowance(8 * MS, 16 * MS, 60 * MS, 50 * MS, slack=False) == 0.0


def test_plan_walks_the_funnel_in_order() -> None:
    plan = DeadlinePlan.from_ms(50, DEFAULT_STAGE_BUDGETS_MS, slack=True)
    assert list(plan.budgets_s) == ["exposure_filter", "recall", "prerank", "rank", "rerank", "exposure_write"]
    assert plan.allowance(("exposure_filter",), 0.0) == pytest.approx(21 * MS)  # 50 - (5 + 8 + 12 + 2 + 2)
    assert plan.allowance(("prerank",), 3 * MS) == pytest.approx(31 * MS)  # 47 left, 16 owed to rank, rerank, write
    assert plan.allowance(("rank",), 20 * MS) == pytest.approx(26 * MS)  # 30 left, 4 owed
    assert plan.allowance(("rank",), 40 * MS) == pytest.approx(10 * MS)  # its own 12 exceeds what is left: 10
    assert plan.allowance(("rerank",), 49 * MS) == pytest.approx(1 * MS)  # 1 ms of the total left
    assert plan.allowance(("exposure_write",), 51 * MS) == 0.0  # past the deadline: skip


def test_stages_one_call_does_share_their_budgets_and_owe_what_the_last_owes() -> None:
    plan = DeadlinePlan.from_ms(50, DEFAULT_STAGE_BUDGETS_MS, slack=False)  # prerank 8 + rank 12
    assert plan.allowance(("prerank", "rank"), 3 * MS) == pytest.approx(20 * MS)
    assert plan.allowance(("prerank", "rank"), 40 * MS) == pytest.approx(10 * MS)  # capped by what is left
    slack = DeadlinePlan.from_ms(50, DEFAULT_STAGE_BUDGETS_MS, slack=True)
    assert slack.allowance(("prerank", "rank"), 3 * MS) == pytest.approx(43 * MS)  # 47 left, 4 owed to rerank, write


def test_an_idle_request_never_runs_out_of_its_budgets() -> None:
    """Every stage taking exactly its budget, back to back, finishes inside the default deadline."""
    plan = DeadlinePlan.from_ms(50, DEFAULT_STAGE_BUDGETS_MS, slack=True)
    elapsed = 0.0
    for stage, budget in plan.budgets_s.items():
        assert plan.allowance((stage,), elapsed) >= budget
        elapsed += budget


def test_plan_without_slack_gives_each_stage_its_budget() -> None:
    plan = DeadlinePlan.from_ms(50, {"a": 5, "b": 0.01}, slack=False)
    assert plan.allowance(("a",), 0.0) == pytest.approx(5 * MS)
    assert plan.allowance(("b",), 1 * MS) == pytest.approx(0.01 * MS)


def test_default_budgets_are_the_design_table() -> None:
    s = load_settings()
    assert s.request_deadline_ms == 50
    assert s.stage_budgets_ms == {"exposure_filter": 2, "recall": 5, "prerank": 8, "rank": 12, "rerank": 2, "exposure_write": 2}
    assert s.deadline_slack is True


def test_budgets_named_keep_the_rest_at_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_STAGE_BUDGETS_MS", '{"rank": 20, "prerank": "9.5"}')
    s = load_settings()
    assert s.stage_budgets_ms == {**DEFAULT_STAGE_BUDGETS_MS, "rank": 20.0, "prerank": 9.5}


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"stage_budgets_ms": {"rnak": 3}}, ["CASCADE_STAGE_BUDGETS_MS", "rnak", "exposure_write"]),
        ({"stage_budgets_ms": {"rank": 0}}, ["CASCADE_STAGE_BUDGETS_MS", "rank", "> 0"]),
        ({"stage_budgets_ms": {"rank": "fast"}}, ["CASCADE_STAGE_BUDGETS_MS", "rank", "'fast'"]),
        ({"stage_budgets_ms": {"rank": True}}, ["CASCADE_STAGE_BUDGETS_MS", "rank"]),
        ({"stage_budgets_ms": {"rank": float("inf")}}, ["CASCADE_STAGE_BUDGETS_MS", "rank"]),
        ({"stage_budgets_ms": [5, 2]}, ["CASCADE_STAGE_BUDGETS_MS", "dictionary"]),
        ({"request_deadline_ms": 0}, ["CASCADE_REQUEST_DEADLINE_MS"]),
        ({"request_deadline_ms": 20}, ["CASCADE_STAGE_BUDGETS_MS", "31 ms", "CASCADE_REQUEST_DEADLINE_MS", "20 ms"]),
    ],
)
def test_bad_deadline_settings_name_the_variable(overrides: dict, words: list[str]) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(**overrides)
    for word in words:
        assert word in str(err.value)
