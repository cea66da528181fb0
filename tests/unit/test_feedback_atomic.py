"""The pure side of atomic feedback: what a batch may hold, which events are first, the script's
argument, and trending weights that stay finite for any timestamp."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from redis.crc import key_slot

from cascade.feedback import EXACT_END, Event, event_problems, first_kept, first_occurrences
from cascade.recall.popular import (
    DECAY_EPOCH, MAX_EXPONENT, batch_reference, decayed_increment, relative_increment, trending_with_fallback,
)
from orchestrator.clients.feedback import FeedbackLimits, trending_payload, users_payload

NOW = 1_796_000_000.0  # 2026-11-29
DAY = 86_400.0
YEAR = 365 * DAY
LIMITS = FeedbackLimits(100, 200, 10, 300, 5, DAY, 400)


def ev(n: int, kind: str = "click", ts: int = int(NOW), dwell_ms: int = 0, item: int = 7, request_id: str = "r") -> Event:
    return Event(f"e{n}", 1, item, kind, ts, request_id, dwell_ms)


def test_a_good_batch_has_no_problems() -> None:
    assert event_problems([ev(1), ev(2, "dwell", dwell_ms=EXACT_END - 1), ev(3, "impression")]) == []


@pytest.mark.parametrize(("event", "field"), [
    (ev(1, "dwell", dwell_ms=2**62), "events.0.dwell_ms"),  # the HINCRBY overflow
    (ev(1, "dwell", dwell_ms=-1), "events.0.dwell_ms"),
    (ev(1, ts=2**62), "events.0.timestamp"),
    (ev(1, ts=-5), "events.0.timestamp"),
    (ev(1, "like"), "events.0.type"),
    (Event("", 1, 7, "click", int(NOW)), "events.0.event_id"),
])
def test_a_value_the_writes_cannot_take_is_named(event: Event, field: str) -> None:
    assert [f for f, _ in event_problems([event])] == [field]


def test_a_label_the_batch_would_take_past_2_53_is_named_and_a_repeat_does_not_count() -> None:
    half = EXACT_END // 2
    assert event_problems([ev(1, "dwell", dwell_ms=half), ev(1, "dwell", dwell_ms=half)]) == []  # one id: once
    problems = event_problems([ev(1, "dwell", dwell_ms=half), ev(2, "dwell", dwell_ms=half)])
    assert [f for f, _ in problems] == ["labels.r.dwell_ms:7"]


def test_the_first_event_of_each_user_and_id_is_kept_in_batch_order() -> None:
    other_user = Event("e1", 2, 7, "click", int(NOW), "r")  # ids are unique per user, as the store claims them
    events = [ev(1), ev(2), ev(1), other_user, ev(3), ev(2)]
    assert first_occurrences(events) == [True, True, False, True, True, False]
    assert [(e.user_id, e.event_id) for e in first_kept(events)] == [(1, "e1"), (1, "e2"), (2, "e1"), (1, "e3")]


def test_a_users_step_keeps_big_numbers_exact_and_claims_every_id_in_the_users_slot() -> None:
    big = EXACT_END - 1
    step = users_payload([ev(1, "dwell", dwell_ms=big), ev(2, "impression", item=8)], LIMITS, "tok")
    payload = json.loads(step.argument)
    assert payload["ids"] == ["cascade:feedback:event:{u1}:e1", "cascade:feedback:event:{u1}:e2"] and payload["token"] == "tok"
    assert step.key == payload["ids"][0]
    assert payload["labels"] == [["cascade:labels:{u1}:r", 400, ["dwell_ms:7", str(big), "impressions:8", "1"]]]
    assert payload["exposures"][0][:3] == ["cascade:exposure:long:{u1}", 200, 10]
    assert "trending" not in payload and payload["clicks"] == []  # no click: no sequence, no trending
    assert {key_slot(k.encode()) for k in [*payload["ids"], payload["labels"][0][0], payload["exposures"][0][0]]} == {
        key_slot(b"{u1}")
    }


def test_a_step_of_several_users_writes_each_users_own_keys() -> None:
    events = [ev(1), Event("e1", 2, 8, "click", int(NOW), "s"), Event("e2", 2, 9, "impression", int(NOW), "s")]
    payload = json.loads(users_payload(events, LIMITS, "tok").argument)
    assert payload["ids"] == ["cascade:feedback:event:{u1}:e1", "cascade:feedback:event:{u2}:e1", "cascade:feedback:event:{u2}:e2"]
    assert [e[0] for e in payload["exposures"]] == ["cascade:exposure:long:{u1}", "cascade:exposure:long:{u2}"]
    assert [c[0] for c in payload["clicks"]] == ["cascade:seq:{u1}", "cascade:seq:{u2}"]
    assert [(h[0], h[2]) for h in payload["labels"]] == [
        ("cascade:labels:{u1}:r", ["clicks:7", "1"]), ("cascade:labels:{u2}:s", ["clicks:8", "1", "impressions:9", "1"]),
    ]


def test_the_trending_steps_weights_are_relative_to_the_latest_clamped_click() -> None:
    events = [ev(1, ts=int(NOW - DAY)), ev(2, ts=int(NOW + YEAR), item=8), ev(3, ts=int(NOW), item=8)]
    step = trending_payload(events, LIMITS, "tok", NOW)
    payload = json.loads(step.argument)
    trending = payload["trending"]
    assert float(trending["reference"]) == NOW
    weights = dict(zip(trending["items"][::2], map(float, trending["items"][1::2])))
    assert weights == pytest.approx({"7": math.exp(-1), "8": 2.0})  # the future click counts as one now
    slots = {key_slot(k.encode()) for k in [*payload["ids"], trending["key"], trending["epoch_key"]]}
    assert slots == {key_slot(b"{trending}")} and payload["exposures"] == payload["clicks"] == payload["labels"] == []


@pytest.mark.parametrize("ahead_s", [YEAR, 10 * YEAR])
def test_a_click_dated_years_ahead_counts_as_a_click_now(ahead_s: float) -> None:
    future = NOW + ahead_s
    reference = batch_reference([NOW - 10, future], NOW)
    assert reference == NOW
    assert relative_increment(future, reference, NOW, DAY) == 1.0
    assert relative_increment(NOW - DAY, reference, NOW, DAY) == pytest.approx(math.exp(-1))


@pytest.mark.parametrize("ahead_s", [YEAR, 10 * YEAR, 100 * YEAR])
def test_years_ahead_every_increment_is_finite_and_the_decayed_order_holds(ahead_s: float) -> None:
    """The writer's clock `now` years ahead: with the epoch rolled to the batch's reference (what the
    script does once the reference is MAX_EXPONENT tau past it), weight x exp((reference - epoch) / tau)
    is the click's decayed increment, finite, and later clicks weigh more."""
    now = NOW + ahead_s
    clicks = [now - 3 * DAY, now - DAY, now]
    reference = batch_reference(clicks, now)
    epoch = reference if (reference - DECAY_EPOCH) / DAY > MAX_EXPONENT else DECAY_EPOCH
    increments = [relative_increment(ts, reference, now, DAY) * math.exp((reference - epoch) / DAY) for ts in clicks]
    assert all(math.isfinite(x) and x > 0 for x in increments) and increments == sorted(increments)
    assert increments == pytest.approx([decayed_increment(ts, DAY, epoch) for ts in clicks])


def test_the_reader_takes_the_stored_epoch() -> None:
    epoch = DECAY_EPOCH + 700 * DAY
    ids, scores = trending_with_fallback(
        np.array([4, 9]), np.array([3.0, 1.0]), now=epoch + 2 * DAY, tau_s=DAY,
        fallback_ids=np.array([1]), fallback_scores=np.array([0.5], np.float32), k=3, epoch=epoch,
    )
    assert ids.tolist() == [4, 9, 1]
    assert scores.tolist() == pytest.approx([math.log(3) - 2, -2.0, 0.5])
