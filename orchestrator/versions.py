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

With more than one orchestrator process, a switch reaches the process that took the call; it writes
the scorer's new version to a board every process reads (`orchestrator.ports.OperatorBoard`, Redis),
and the others `follow` it within a poll (CASCADE_VERSIONS_POLL_S): each checks that Triton serves
the version, warms it, then moves its own new requests. A process starting up takes the board's
versions where Triton serves them. Without a board (one process, tests) nothing is shared.

`two_stage` is the set of (pre-rank, rank) version pairs whose two-stage model Triton has ready (the
CPU profile writes one per pair, `export.repository`): a request whose versions are such a pair makes
one call instead of two. A switch loads the two-stage model of the new active pair (when the
repository has it) and warms it before moving traffic; without one, requests make two calls.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from cascade.triton.layout import (
    PINNED_PIPELINE_VERSION,
    SCORERS,
    lookalike_version,
    pinned_version,
    pipeline_name,
    two_stage_name,
    two_stage_versions,
)
from orchestrator.clients.triton import TritonScorer
from orchestrator.ports import OperatorBoard

log = logging.getLogger("cascade.orchestrator")
READY = "READY"
LOOKALIKE = "lookalike"


Warm = Callable[[Mapping[str, int], bool], Awaitable[object]]


class VersionNotServable(RuntimeError):
    pass


def ready_two_stage(index: Iterable[tuple[str, int, str]]) -> set[tuple[int, int]]:
    """(pre-rank, rank) version pairs whose two-stage model Triton has ready."""
    pairs = {two_stage_versions(name) for name, version, state in index if state == READY and version == PINNED_PIPELINE_VERSION}
    return pairs - {None}


def has_scorer_model(index: Iterable[tuple[str, int, str]], scorer: str) -> bool:
    """Whether Triton serves `scorer` as a model of its own (its pipelines are ensembles calling it)."""
    return any(name == scorer for name, _, _ in index)


def servable_versions(index: Iterable[tuple[str, int, str]], scorer: str) -> list[int]:
    """Versions of `scorer` whose pinned pipeline Triton has ready, ascending (the look-alike scorer:
    its `lookalike_v<N>` models ready).

    Where the scorer is a model of its own, that version must be ready too: reloading the scorer after
    a prune drops versions that a loaded pinned ensemble still names. A fused pipeline holds its model.
    """
    index = list(index)
    if scorer == LOOKALIKE:  # a model of its own per version (`lookalike_v<N>`)
        return sorted({v for name, _, state in index if state == READY and (v := lookalike_version(name)) is not None})
    ready = {(name, version) for name, version, state in index if state == READY}
    pinned = {pinned_version(scorer, name) for name, version in ready if version == PINNED_PIPELINE_VERSION} - {None}
    if has_scorer_model(index, scorer):
        pinned = {v for v in pinned if (scorer, v) in ready}
    return sorted(pinned)


class ScorerVersions:
    def __init__(self, initial: Mapping[str, int], board: OperatorBoard | None = None) -> None:
        self.active = {scorer: int(initial[scorer]) for scorer in SCORERS}  # live: updated in place, read per request
        self.two_stage: set[tuple[int, int]] = set()  # live too
        self.board = board
        self._switching = asyncio.Lock()
        self._not_served: set[tuple[str, int]] = set()  # board entries Triton did not serve, logged once each

    def pipelines(self) -> list[str]:
        """The pinned pipelines new requests call."""
        return [pipeline_name(s, v) for s, v in self.active.items()]

    async def discover(self, triton: TritonScorer) -> None:
        """Take, per scorer, the board's version where Triton serves it, else the newest servable one;
        Triton unreachable: keep the current ones."""
        try:
            index = await triton.loaded()
        except Exception as err:  # Triton down at start: the manifest's versions stand, requests degrade
            log.warning("scorer versions not read from Triton (%s); calling %s", err, self.active)
            return
        shared = await self._read_board()
        for scorer in SCORERS:
            versions = servable_versions(index, scorer)
            if shared.get(scorer) in versions:
                self.active[scorer] = shared[scorer]
            elif versions:
                self.active[scorer] = versions[-1]
        self._set_two_stage(ready_two_stage(index))

    async def _read_board(self) -> dict[str, int]:
        if self.board is None:
            return {}
        try:
            return await self.board.read()
        except Exception as err:  # Redis down: this process serves what Triton offers, and follows later
            log.warning("shared scorer versions not read (%s)", err)
            return {}

    async def follow(self, triton: TritonScorer, warm_for: Callable[[str], Warm]) -> list[str]:
        """Move to the board's versions where they differ from the active ones and Triton serves them
        (each warmed first, `warm_for(scorer)`); return the scorers switched. A version Triton does not
        serve yet is left for a later call (logged once)."""
        shared = await self._read_board()
        if all(self.active[s] == v for s, v in shared.items()):
            return []
        async with self._switching:
            index = await triton.loaded()
            versions = dict(self.active)
            for scorer, version in shared.items():
                if version == self.active[scorer]:
                    continue
                if version in servable_versions(index, scorer):
                    versions[scorer] = version
                elif (scorer, version) not in self._not_served:
                    self._not_served.add((scorer, version))
                    log.warning("the shared versions name %s version %d, which Triton does not serve; still calling %d",
                                scorer, version, self.active[scorer])
            switched = [s for s in SCORERS if versions[s] != self.active[s]]
            for scorer in switched:
                await warm_for(scorer)(versions, False)
            if switched:
                pairs = await self._load_two_stage(triton, versions, warm_for(switched[0]), index)
                self.active.update(versions)
                self._set_two_stage(pairs)
        for scorer in switched:
            log.info("%s: traffic moved to version %d, following the shared versions", scorer, versions[scorer])
        return switched

    def _set_two_stage(self, pairs: set[tuple[int, int]]) -> None:
        self.two_stage.clear()
        self.two_stage.update(pairs)

    async def activate(self, triton: TritonScorer, scorer: str, version: int, warm: Warm) -> int:
        """Load `version` of `scorer` and its pipeline, warm it, write it to the board, then move new
        requests to it; return the version it replaced. Raises VersionNotServable (nothing changed) if
        Triton cannot serve it or the board cannot be written.

        `warm(versions, two_stage)` sends one request at `versions`, through the two-stage model when
        `two_stage`. The two-stage model of the new pair is loaded and warmed too where the repository
        has one; if it fails, requests make two calls (logged)."""
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
            index = await triton.loaded()
            servable = servable_versions(index, scorer)
            if version not in servable:
                raise VersionNotServable(
                    f"{scorer} version {version} is not servable after loading (servable: {servable}); "
                    f"publish it first (python -m export.publish {scorer})"
                )
            versions = {**self.active, scorer: version}
            try:
                await warm(versions, False)
            except Exception as err:
                raise VersionNotServable(f"{pipeline} failed its warm-up request: {err}") from err
            pairs = await self._load_two_stage(triton, versions, warm, index)
            if self.board is not None:
                try:
                    await self.board.write(scorer, version)
                except Exception as err:
                    raise VersionNotServable(f"{scorer} version {version} not shared with the other processes: {err}") from err
            previous, self.active[scorer] = self.active[scorer], version
            self._set_two_stage(pairs)
        log.info("%s: traffic moved from version %d to %d", scorer, previous, version)
        return previous

    async def _load_two_stage(
        self, triton: TritonScorer, versions: Mapping[str, int], warm: Warm, index: list[tuple[str, int, str]],
    ) -> set[tuple[int, int]]:
        """The ready two-stage pairs once the model of `versions`' pair is loaded and warmed (where the
        repository has it; any failure leaves that pair out)."""
        pair = (versions["prerank"], versions["rank"])
        model = two_stage_name(*pair)
        try:
            if pair not in ready_two_stage(index):
                await triton.load(model)  # the repository may not have it (the gpu profile): that fails
                index = await triton.loaded()
            pairs = ready_two_stage(index)
            if pair in pairs:
                await warm(versions, True)
            return pairs
        except Exception as err:
            log.info("%s not served (%s): versions %s will make two calls", model, err, dict(versions))
            return ready_two_stage(index) - {pair}
