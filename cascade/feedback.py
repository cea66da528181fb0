"""What feedback events do, as pure rules: which exposures, clicks, popularity counts and labels a batch adds.

Every event marks its item exposed for the user (long-term buffer) and adds to the label of its
(request, item) (`cascade.samples`); a click also extends the user's live sequence and the item's
trending popularity. A dwell is a label only (it follows the click that opened the item).

The orchestrator deduplicates events by id in Redis first; these functions take the new ones and
group their effects per Redis key, so the writes go out as one pipelined round trip.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from cascade.samples import label_increments

EventType = Literal["impression", "click", "dwell"]


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
