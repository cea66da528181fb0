"""One request's immutable context, built once at the door: who, how many, when, which arm and versions.

Everything the funnel decides per request from the settings and the experiment lives here, so the
funnel itself (`orchestrator.funnel`) reads one object and never consults settings or experiments.
The experiments in force can change while requests run (`orchestrator.experiments`): they are one
immutable object, replaced whole and read once per request.
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Literal

from cascade.experiments import Experiment, parse_experiments
from cascade.rerank.base import RerankOperator
from cascade.rerank.registry import build_chain
from cascade.request_ids import RequestIds
from cascade.settings import Settings

NONE = "none"  # the experiment and arm labels (metrics, samples) without experiments
Source = Literal["environment", "shared"]  # CASCADE_EXPERIMENTS, or the operator board's (orchestrator.experiments)


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    user_id: int
    k: int
    timestamp: int  # unix seconds the features are computed at
    versions: Mapping[str, int]  # scorer -> the version this request calls
    chain: Sequence[RerankOperator]  # the rerank operators, in order
    experiment: str | None  # the experiment in force, None without experiments
    arm: str  # the user's arm (NONE without experiments)
    two_stage: bool = False  # Triton has the two-stage model of `versions`: pre-rank and rank in one call

    @property
    def experiment_label(self) -> str:
        return self.experiment if self.experiment is not None else NONE


@dataclass(frozen=True, slots=True)
class ExperimentsInForce:
    """The experiments requests are served under (the first is in force), where they came from, and
    the rerank chain of each arm of the one in force."""

    experiments: tuple[Experiment, ...]
    source: Source
    chains: Mapping[str, Sequence[RerankOperator]]  # arm name -> its chain

    @classmethod
    def of(cls, experiments: Sequence[Experiment], source: Source, default_chain: Sequence[RerankOperator]) -> ExperimentsInForce:
        """`experiments` (valid: `parse_experiments`' output) with their chains built; an arm without
        a chain of its own runs `default_chain`."""
        arms = experiments[0].arms if experiments else ()
        chains = {a.name: tuple(build_chain(a.rerank_chain)) if a.rerank_chain is not None else default_chain for a in arms}
        return cls(tuple(experiments), source, chains)

    @property
    def experiment(self) -> Experiment | None:
        return self.experiments[0] if self.experiments else None


class ContextFactory:
    """Turns (user, k, timestamp) into a RequestContext: the user's arm, its chain and pinned versions."""

    def __init__(
        self, settings: Settings, active_versions: Mapping[str, int], two_stage: Set[tuple[int, int]] = frozenset(),
    ) -> None:
        self.active = active_versions  # the live mapping a version switch updates (orchestrator.versions)
        secret = settings.request_id_secret
        self.ids = RequestIds(secret.get_secret_value().encode() if secret is not None else secrets.token_bytes(32))
        # the live set of (pre-rank, rank) version pairs Triton serves in one call (orchestrator.versions)
        self.two_stage = two_stage if settings.two_stage else frozenset()
        self.chain = tuple(build_chain(settings.rerank_chain))
        self.in_force = ExperimentsInForce.of(parse_experiments(settings.experiments), "environment", self.chain)

    def use_experiments(self, experiments: Sequence[Experiment], source: Source) -> None:
        """Requests built from now on run under `experiments` (valid: `parse_experiments`' output). One
        assignment: a request that already read the previous ones finishes under them."""
        self.in_force = ExperimentsInForce.of(experiments, source, self.chain)

    def pinned_versions(self, scorer: str) -> list[int]:
        """The versions of `scorer` that the arms of the experiment in force call instead of the active one."""
        experiment = self.in_force.experiment
        arms = experiment.arms if experiment is not None else ()
        return sorted({a.model_versions[scorer] for a in arms if a.model_versions and scorer in a.model_versions})

    def build(self, user_id: int, k: int, timestamp: int | None) -> RequestContext:
        ts = int(time.time()) if timestamp is None else timestamp
        versions = dict(self.active)  # one read per request: a switch mid-request never mixes versions
        in_force = self.in_force  # likewise: a change of experiments mid-request never mixes arms
        experiment = in_force.experiment
        if experiment is None:
            return RequestContext(
                self.ids.issue(user_id), user_id, k, ts, versions, self.chain, None, NONE, self._one_call(versions)
            )
        arm = experiment.assign(user_id)
        versions.update({s: v for s, v in (arm.model_versions or {}).items() if s in versions})  # a look-alike pin is not the funnel's
        return RequestContext(
            self.ids.issue(user_id), user_id, k, ts, versions, in_force.chains[arm.name], experiment.name, arm.name,
            self._one_call(versions),
        )

    def _one_call(self, versions: Mapping[str, int]) -> bool:
        return (versions["prerank"], versions["rank"]) in self.two_stage
