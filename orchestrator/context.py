"""One request's immutable context, built once at the door: who, how many, when, which arm and versions.

Everything the funnel decides per request from the settings and the experiment lives here, so the
funnel itself (`orchestrator.funnel`) reads one object and never consults settings or experiments.
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

from cascade.experiments import Experiment, parse_experiments
from cascade.rerank.base import RerankOperator
from cascade.rerank.registry import build_chain
from cascade.request_ids import RequestIds
from cascade.settings import Settings

NONE = "none"  # the experiment and arm labels (metrics, samples) without experiments


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
        experiments = parse_experiments(settings.experiments)
        self.experiment: Experiment | None = experiments[0] if experiments else None
        arms = self.experiment.arms if self.experiment is not None else ()
        self.arm_chains = {a.name: tuple(build_chain(a.rerank_chain)) if a.rerank_chain is not None else self.chain for a in arms}

    def pinned_versions(self, scorer: str) -> list[int]:
        """The versions of `scorer` that experiment arms call instead of the active one."""
        arms = self.experiment.arms if self.experiment is not None else ()
        return sorted({a.model_versions[scorer] for a in arms if a.model_versions and scorer in a.model_versions})

    def build(self, user_id: int, k: int, timestamp: int | None) -> RequestContext:
        ts = int(time.time()) if timestamp is None else timestamp
        versions = dict(self.active)  # one read per request: a switch mid-request never mixes versions
        if self.experiment is None:
            return RequestContext(
                self.ids.issue(user_id), user_id, k, ts, versions, self.chain, None, NONE, self._one_call(versions)
            )
        arm = self.experiment.assign(user_id)
        versions.update(arm.model_versions or {})
        return RequestContext(
            self.ids.issue(user_id), user_id, k, ts, versions, self.arm_chains[arm.name], self.experiment.name, arm.name,
            self._one_call(versions),
        )

    def _one_call(self, versions: Mapping[str, int]) -> bool:
        return (versions["prerank"], versions["rank"]) in self.two_stage
