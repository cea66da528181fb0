"""What feedback events do, as pure rules: which exposures, clicks, popularity counts and labels a batch adds.

Every event marks its item exposed for the user (long-term buffer) and adds to the label of its
(request, item) (`cascade.samples`); a click also extends the user's live sequence and the item's
trending popularity. A dwell is a label only (it follows the click that opened the item).

The orchestrator's store (`orchestrator.clients.feedback`) checks a batch (`event_problems`),
keeps each event id's first occurrence per user (`first_occurrences`), and applies the effects of
the new ones, grouped per Redis key here, in atomic steps that also claim their ids.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from cascade.samples import label_increments

EventType = Literal["impression", "click", "dwell"]
EVENT_TYPES = ("impression", "click", "dwell")
EXACT_END = 2**53  # timestamps and label increments stay below: exact as Redis scores and Lua numbers


@dataclass(frozen=True)
class Event:
    event_id: str
    user_id: int
    item_id: int
    type: EventType
    timestamp: int
    request_id: str = ""  # the answer the item was served in ("" if unknown: no label is kept)
    dwell_ms: int = 0  # dwell events only


@dataclass
class FeedbackEffects:
    exposures: dict[int, dict[int, int]] = field(default_factory=dict)  # user -> item -> latest unix seconds
    clicks: dict[int, list[int]] = field(default_factory=dict)  # user -> clicked items, oldest first
    popularity: Counter = field(default_factory=Counter)  # item -> summed click weight in this batch
    labels: dict[str, Counter] = field(default_factory=dict)  # request_id -> "<label>:<item>" -> increment


def effects_of(events: list[Event], click_weight: Callable[[int], float] = lambda ts: 1) -> FeedbackEffects:
    """The writes new (deduplicated) events call for. Clicks are ordered by timestamp, ties in batch
    order; each click adds `click_weight(timestamp)` to its item's popularity (a plain count by
    default; the popular channel's time-decayed increment in serving)."""
    exposures: dict[int, dict[int, int]] = defaultdict(dict)
    clicks: dict[int, list[int]] = defaultdict(list)
    popularity: Counter = Counter()
    for e in sorted(events, key=lambda e: e.timestamp):  # stable: ties keep batch order
        seen = exposures[e.user_id]
        seen[e.item_id] = max(seen.get(e.item_id, e.timestamp), e.timestamp)
        if e.type == "click":
            clicks[e.user_id].append(e.item_id)
            popularity[e.item_id] += click_weight(e.timestamp)
    labels = label_increments((e.request_id, e.item_id, e.type, e.dwell_ms) for e in events if e.request_id)
    return FeedbackEffects(dict(exposures), dict(clicks), popularity, labels)


def event_problems(events: list[Event]) -> list[tuple[str, str]]:
    """(field, why) for each value whose writes would fail or be inexact, named as the request names
    it ("events.<n>.<field>"), and for each label whose batch total would be; [] for a good batch.

    Timestamps are sorted-set scores (doubles) and the store's Lua step does its arithmetic in
    doubles, so values stay below 2**53; the stored label counter's int64 headroom is checked in
    that step, against what Redis holds.
    """
    problems: list[tuple[str, str]] = []
    for n, e in enumerate(events):
        if not e.event_id:
            problems.append((f"events.{n}.event_id", "must not be empty"))
        if e.type not in EVENT_TYPES:
            problems.append((f"events.{n}.type", f"{e.type!r} is not one of {', '.join(EVENT_TYPES)}"))
        if not 0 <= e.timestamp < EXACT_END:
            problems.append((f"events.{n}.timestamp", f"{e.timestamp} is outside [0, 2**53)"))
        if not 0 <= e.dwell_ms < EXACT_END:
            problems.append((f"events.{n}.dwell_ms", f"{e.dwell_ms} is outside [0, 2**53)"))
    if problems:
        return problems
    for request_id, increments in label_increments(
        (e.request_id, e.item_id, e.type, e.dwell_ms) for e in first_kept(events) if e.request_id
    ).items():
        problems += [
            (f"labels.{request_id}.{field}", f"this batch adds {n}, past 2**53")
            for field, n in increments.items() if n >= EXACT_END
        ]
    return problems


def first_occurrences(events: list[Event]) -> list[bool]:
    """Per event, whether it is the first in the batch with its user and id (a repeat is a duplicate;
    event ids are unique per user, as the store claims them, `orchestrator.clients.keys`)."""
    seen: set[tuple[int, str]] = set()
    out = []
    for e in events:
        out.append((e.user_id, e.event_id) not in seen)
        seen.add((e.user_id, e.event_id))
    return out


def first_kept(events: list[Event]) -> list[Event]:
    """The events that are the first of their user and id in the batch, in batch order."""
    return [e for e, first in zip(events, first_occurrences(events)) if first]
