"""Deadline arithmetic for one request: how long each funnel stage may take. Pure; the clock is passed in.

The request has a total deadline and every stage a budget, in funnel order. A budget is the time a
stage is sure to get (while the total lasts) and the time the stages before it must leave for it.
With slack (the default), a stage may also take whatever the total has left beyond the budgets of
the stages after it: the budgets of earlier stages that they did not spend, and the part of the
deadline no budget claims (HTTP, serialisation). So a stage is cut off only when finishing it would
eat into what later stages are owed, which is what a stuck server does, not a busy moment. Without
slack each stage gets exactly its budget. A stage whose allowance is zero is skipped unstarted.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def stage_allowance(budget_s: float, reserved_after_s: float, elapsed_s: float, total_s: float, slack: bool) -> float:
    """Seconds a stage starting `elapsed_s` into the request may take.

    `reserved_after_s` is the sum of the budgets of the stages after it. An earlier overrun never
    cuts this stage below its own budget; only the total deadline does.
    """
    remaining = max(0.0, total_s - elapsed_s)
    if not slack:
        return min(budget_s, remaining)
    return min(remaining, max(budget_s, remaining - reserved_after_s))


@dataclass(frozen=True)
class DeadlinePlan:
    """The deadline every request shares: the total, each stage's budget and what the later stages are owed."""

    total_s: float
    budgets_s: Mapping[str, float]  # in funnel order
    reserved_after_s: Mapping[str, float]
    slack: bool

    @classmethod
    def from_ms(cls, total_ms: float, budgets_ms: Mapping[str, float], slack: bool) -> DeadlinePlan:
        budgets = {stage: ms / 1e3 for stage, ms in budgets_ms.items()}
        reserved, after = 0.0, {}
        for stage in reversed(list(budgets)):
            after[stage] = reserved
            reserved += budgets[stage]
        return cls(total_ms / 1e3, budgets, after, slack)

    def allowance(self, stages: Sequence[str], elapsed_s: float) -> float:
        """The seconds `stages` (consecutive, in funnel order; more than one when one call does the work
        of several), starting `elapsed_s` into the request, may take together; 0 means: skip them."""
        budget = sum(self.budgets_s[stage] for stage in stages)
        return stage_allowance(budget, self.reserved_after_s[stages[-1]], elapsed_s, self.total_s, self.slack)
