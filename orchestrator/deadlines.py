"""Deadline arithmetic for one request: how long each funnel stage may take. Pure; the clock is passed in.

The request has a total deadline and every stage a budget. A stage may spend its own budget and,
with rollover, what the stages before it left unspent of theirs; never more than what is left of
the total. A stage whose allowance is zero is skipped without being started.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


def stage_allowance(budget_s: float, planned_before_s: float, elapsed_s: float, total_s: float, rollover: bool) -> float:
    """Seconds a stage starting `elapsed_s` into the request may take.

    `planned_before_s` is the sum of the budgets of the stages before it: what they had planned to
    spend by now. What they left unspent rolls over (if `rollover`); an overrun does not cut this
    stage below its own budget, only the total deadline does.
    """
    unspent = max(0.0, planned_before_s - elapsed_s) if rollover else 0.0
    return max(0.0, min(budget_s + unspent, total_s - elapsed_s))


@dataclass
class Deadline:
    """One request's deadline; `begin` each stage once, in funnel order."""

    total_s: float
    budgets_s: Mapping[str, float]
    rollover: bool
    started: float  # the clock's reading when the request began
    planned_s: float = 0.0  # budgets of the stages begun so far

    @classmethod
    def start(cls, total_ms: float, budgets_ms: Mapping[str, float], rollover: bool, now: float) -> Deadline:
        return cls(total_ms / 1e3, {stage: ms / 1e3 for stage, ms in budgets_ms.items()}, rollover, now)

    def remaining(self, now: float) -> float:
        """Seconds left of the total deadline (0 once it has passed)."""
        return max(0.0, self.total_s - (now - self.started))

    def begin(self, stage: str, now: float) -> float:
        """The seconds `stage`, starting now, may take; 0 means: skip it."""
        budget = self.budgets_s[stage]
        allowance = stage_allowance(budget, self.planned_s, now - self.started, self.total_s, self.rollover)
        self.planned_s += budget
        return allowance
