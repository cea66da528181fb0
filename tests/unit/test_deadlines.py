"""Deadline arithmetic (orchestrator.deadlines) and the settings that configure it."""
from __future__ import annotations

import pytest

from cascade.settings import DEFAULT_STAGE_BUDGETS_MS, SettingsError, load_settings
from orchestrator.deadlines import Deadline, stage_allowance

MS = 1e-3


@pytest.fixture(autouse=True)
def no_deadline_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CASCADE_REQUEST_DEADLINE_MS", "CASCADE_STAGE_BUDGETS_MS", "CASCADE_DEADLINE_ROLLOVER"):
        monkeypatch.delenv(name, raising=False)


def test_allowance_is_the_budget_plus_what_earlier_stages_left() -> None:
    # earlier stages planned 7 ms and took 4: this 8 ms stage may take 11
    assert stage_allowance(8 * MS, 7 * MS, 4 * MS, 50 * MS, rollover=True) == pytest.approx(11 * MS)
    assert stage_allowance(8 * MS, 7 * MS, 4 * MS, 50 * MS, rollover=False) == pytest.approx(8 * MS)


def test_an_earlier_overrun_does_not_cut_the_budget_only_the_total_does() -> None:
    assert stage_allowance(8 * MS, 7 * MS, 20 * MS, 50 * MS, rollover=True) == pytest.approx(8 * MS)
    assert stage_allowance(8 * MS, 7 * MS, 45 * MS, 50 * MS, rollover=True) == pytest.approx(5 * MS)
    assert stage_allowance(8 * MS, 7 * MS, 50 * MS, 50 * MS, rollover=True) == 0.0
    assert stage_allowance(8 * MS, 7 * MS, 60 * MS, 50 * MS, rollover=True) == 0.0


def test_rollover_never_passes_the_total() -> None:
    assert stage_allowance(12 * MS, 40 * MS, 1 * MS, 20 * MS, rollover=True) == pytest.approx(19 * MS)


def test_deadline_walks_the_funnel_in_order() -> None:
    deadline = Deadline.start(50, DEFAULT_STAGE_BUDGETS_MS, rollover=True, now=100.0)
    assert deadline.begin("recall", 100.0) == pytest.approx(5 * MS)
    assert deadline.begin("exposure_filter", 100.0 + 2 * MS) == pytest.approx(5 * MS)  # 2 + 3 left by recall
    assert deadline.begin("prerank", 100.0 + 3 * MS) == pytest.approx(12 * MS)  # 8 + 4 left
    assert deadline.begin("rank", 100.0 + 20 * MS) == pytest.approx(12 * MS)  # prerank overran: its own 12
    assert deadline.begin("rerank", 100.0 + 49 * MS) == pytest.approx(1 * MS)  # 1 ms of the total left
    assert deadline.begin("exposure_write", 100.0 + 51 * MS) == 0.0  # past the deadline: skip
    assert deadline.remaining(100.0 + 10 * MS) == pytest.approx(40 * MS)
    assert deadline.remaining(100.0 + 60 * MS) == 0.0


def test_deadline_without_rollover_gives_each_stage_its_budget() -> None:
    deadline = Deadline.start(50, {"a": 5, "b": 0.01}, rollover=False, now=0.0)
    assert deadline.begin("a", 0.0) == pytest.approx(5 * MS)
    assert deadline.begin("b", 1 * MS) == pytest.approx(0.01 * MS)


def test_default_budgets_are_the_design_table() -> None:
    s = load_settings()
    assert s.request_deadline_ms == 50
    assert s.stage_budgets_ms == {"recall": 5, "exposure_filter": 2, "prerank": 8, "rank": 12, "rerank": 2, "exposure_write": 2}
    assert s.deadline_rollover is True


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
