"""Which version of each scorer the funnel calls, and the switch to a new one while traffic flows.

The funnel calls pinned pipelines (`rank_pipeline_v2`: rank version 2), so every answer names the
version that scored it and traffic moves only when told to. A switch
(`POST /admin/models/{scorer}/activate`): Triton loads the version's pinned pipeline through its
model-control API, the orchestrator scores one warm-up request through it, and only then points new
requests at it. Where the scorer is a model of its own (the GPU profile: the pipeline is an ensemble
feature_assembly -> scorer), Triton first loads the scorer again, picking up the new version directory
while the loaded versions keep serving; on the CPU profile a pinned pipeline is one fused model that
holds its version's ONNX, and no scorer model exists. Requests already in flight finish on the version
they started with, which Triton keeps loaded (`export.publish` prunes the unused ones), so no request
fails.

At start the funnel takes, per scorer, the newest version Triton can serve through its pinned
pipeline (the manifest's version while Triton is unreachable).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from cascade.triton.layout import PINNED_PIPELINE_VERSION, SCORERS, pinned_version, pipeline_name
from orchestrator.clients.triton import TritonScorer

log = logging.getLogger("cascade.orchestrator")
READY = "READY"


class VersionNotServable(RuntimeError):
    pass


def has_scorer_model(index: Iterable[tuple[str, int, str]], scorer: str) -> bool:
    """Whether Triton serves `scorer` as a model of its own (its pipelines are ensembles calling it)."""
    return any(name == scorer for name, _, _ in index)


def servable_versions(index: Iterable[tuple[str, int, str]], scorer: str) -> list[int]:
    """Versions of `scorer` whose pinned pipeline Triton has ready, ascending.

    Where the scorer is a model of its own, that version must be ready too: reloading the scorer after
    a prune drops versions that a loaded pinned ensemble still names. A fused pipeline holds its model.
    """
    index = list(index)
    ready = {(name, version) for name, version, state in index if state == READY}
    pinned = {pinned_version(scorer, name) for name, version in ready if version == PINNED_PIPELINE_VERSION} - {None}
    if has_scorer_model(index, scorer):
        pinned = {v for v in pinned if (scorer, v) in ready}
    return sorted(pinned)


class ScorerVersions:
    def __init__(self, initial: dict[str, int]) -> None:
        self.active = {scorer: int(initial[scorer]) for scorer in SCORERS}
        self._switching = asyncio.Lock()

    def pipelines(self) -> list[str]:
        """The pinned pipelines new requests call."""
        return [pipeline_name(s, v) for s, v in self.active.items()]

    async def discover(self, triton: TritonScorer) -> None:
        """Take the newest servable version of each scorer; Triton unreachable: keep the current ones."""
        try:
            index = await triton.loaded()
        except Exception as err:  # Triton down at start: the manifest's versions stand, requests degrade
            log.warning("scorer versions not read from Triton (%s); calling %s", err, self.active)
            return
        for scorer in SCORERS:
            versions = servable_versions(index, scorer)
            if versions:
                self.active[scorer] = versions[-1]

    async def activate(
        self, triton: TritonScorer, scorer: str, version: int, warm: Callable[[], Awaitable[object]]
    ) -> int:
        """Load `version` of `scorer` and its pipeline, warm it, then move new requests to it; return
        the version it replaced. Raises VersionNotServable (nothing changed) if Triton cannot serve it."""
        if scorer not in SCORERS:
            raise ValueError(f"unknown scorer {scorer!r}; the scorers are {', '.join(SCORERS)}")
        pipeline = pipeline_name(scorer, version)
        async with self._switching:
            try:
                if has_scorer_model(await triton.loaded(), scorer):
                    await triton.load(scorer)
                await triton.load(pipeline)
            except Exception as err:
                raise VersionNotServable(
                    f"triton could not load {scorer} version {version} (was it published? python -m export.publish "
                    f"{scorer}): {err}"
                ) from err
            servable = servable_versions(await triton.loaded(), scorer)
            if version not in servable:
                raise VersionNotServable(
                    f"{scorer} version {version} is not servable after loading (servable: {servable}); "
                    f"publish it first (python -m export.publish {scorer})"
                )
            try:
                await warm()
            except Exception as err:
                raise VersionNotServable(f"{pipeline} failed its warm-up request: {err}") from err
            previous, self.active[scorer] = self.active[scorer], version
        log.info("%s: traffic moved from version %d to %d", scorer, previous, version)
        return previous
