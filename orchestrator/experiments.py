"""The A/B experiments in force, shared by every orchestrator process and kept across restarts.

CASCADE_EXPERIMENTS is where a process starts from; an operator changes the experiments while traffic
flows (`PUT /admin/experiments`). The process that takes the call checks the list, writes it to the
board every process reads (`orchestrator.ports.OperatorBoard`, one Redis key) and only then serves
under it; the others `follow` it within a poll (CASCADE_VERSIONS_POLL_S), and a process starting up
takes the board's experiments over the environment's. The board's value is compared as text, so a
poll that finds it unchanged costs one read. A board with no experiments written (the key absent)
means the environment's; an empty list means none. A value on the board that is not a valid list is
logged once and ignored: what is in force stays. Without a board (one process, tests) nothing is
shared.

Requests read the experiments once, at the door (`orchestrator.context.ContextFactory`), so a change
never mixes arms within a request. Processes do not check a followed list's pinned versions against
Triton: the one that took the call did, against the Triton they share.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence

from cascade.experiments import Experiment, experiments_json, parse_experiments
from orchestrator.clients.errors import BackendUnavailable
from orchestrator.clients.triton import TritonScorer
from orchestrator.context import ContextFactory, ExperimentsInForce
from orchestrator.ports import OperatorBoard
from orchestrator.versions import VersionNotServable, servable_versions

log = logging.getLogger("cascade.orchestrator")


def experiments_text(experiments: Sequence[Experiment]) -> str:
    """The board's text of `experiments`: one spelling per list, so equal lists compare equal."""
    return json.dumps(experiments_json(experiments), sort_keys=True, separators=(",", ":"))


def parse_experiments_text(text: str) -> list[Experiment]:
    """The experiments of the board's `text`; ValueError names the problem (JSON or content), and
    RecursionError is JSON nested too deep."""
    return parse_experiments(json.loads(text))  # json.JSONDecodeError is a ValueError


Pin = tuple[str, str, int]  # (arm, scorer, version)


def pins(experiments: Sequence[Experiment]) -> list[Pin]:
    """The scorer versions the arms of the experiment in force pin, in arm order."""
    arms = experiments[0].arms if experiments else ()
    return [(arm.name, scorer, version) for arm in arms for scorer, version in (arm.model_versions or {}).items()]


def unservable_pins(pinned: Sequence[Pin], index: Iterable[tuple[str, int, str]]) -> list[str]:
    """The `pinned` versions Triton's model `index` cannot serve now ("arm 'a': rank version 7")."""
    index = list(index)
    return [
        f"arm {arm!r}: {scorer} version {version}"
        for arm, scorer, version in pinned if version not in servable_versions(index, scorer)
    ]


class SharedExperiments:
    """Keeps a `ContextFactory`'s experiments in step with the board's."""

    def __init__(self, contexts: ContextFactory, board: OperatorBoard | None = None) -> None:
        self.contexts, self.board = contexts, board
        self.environment = contexts.in_force.experiments  # what an absent board value means
        self._seen: str | None = None  # the board's text this process last acted on (None: absent)
        self._changing = asyncio.Lock()  # a poll's read and apply never straddle a change made here

    @property
    def in_force(self) -> ExperimentsInForce:
        return self.contexts.in_force

    async def discover(self) -> None:
        """At start: take the board's experiments where it has valid ones. Redis down: the environment's
        stand, and the first poll that reads the board takes them."""
        if self.board is None:
            return
        try:
            text = await self.board.experiments()
        except Exception as err:  # noqa: BLE001 - the follow loop catches up once Redis answers
            log.warning("shared experiments not read (%s); serving CASCADE_EXPERIMENTS", err)
            return
        self._take(text)

    async def follow(self) -> bool:
        """Serve under the board's experiments if its value changed since this process last acted on
        it; return whether the experiments in force changed. A failed read raises (the caller retries)."""
        if self.board is None:
            return False
        async with self._changing:
            text = await self.board.experiments()
            if text == self._seen:
                return False
            return self._take(text)

    async def change(self, triton: TritonScorer, experiments: Sequence[Experiment]) -> ExperimentsInForce:
        """Write `experiments` (valid: `parse_experiments`' output) to the board, then serve under them.
        Raises, changing nothing, VersionNotServable if an arm of the experiment in force pins a version
        Triton cannot serve now (Triton is asked only then), BackendUnavailable if the board cannot be
        written."""
        pinned = pins(experiments)
        unservable = unservable_pins(pinned, await triton.loaded()) if pinned else []
        if unservable:
            raise VersionNotServable(
                f"Triton cannot serve what the arms pin ({'; '.join(unservable)}); publish and load it first"
            )
        text = experiments_text(experiments)
        async with self._changing:
            if self.board is not None:
                try:
                    await self.board.write_experiments(text)
                except Exception as err:
                    raise BackendUnavailable(f"redis: experiments not shared with the other processes: {err}") from err
            self._seen = text
            self.contexts.use_experiments(experiments, "shared")
        log.info("experiments in force now %s (set here)", [e.name for e in experiments] or "none")
        return self.in_force

    def _take(self, text: str | None) -> bool:
        """Serve under the board's `text` (None: the environment's); a malformed one is logged and left
        aside. Returns whether the experiments in force changed."""
        self._seen = text
        if text is None:
            experiments, source = self.environment, "environment"
        else:
            try:
                experiments, source = parse_experiments_text(text), "shared"
            except (ValueError, RecursionError) as err:
                log.warning("the shared experiments are not valid, ignored (what is in force stays): %s", err)
                return False
        if (tuple(experiments), source) == (self.in_force.experiments, self.in_force.source):
            return False
        self.contexts.use_experiments(experiments, source)
        log.info("experiments in force now %s (%s)", [e.name for e in experiments] or "none", source)
        return True
