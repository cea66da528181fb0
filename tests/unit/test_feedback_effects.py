"""What a batch of new feedback events writes: long-term exposures, live clicks in time order, click counts."""
from __future__ import annotations

from cascade.feedback import Event, effects_of


def ev(n: int, user: int, item: int, kind: str, ts: int, request_id: str = "", dwell_ms: int = 0) -> Event:
    return Event(f"e{n}", user, item, kind, ts, request_id, dwell_ms)


def test_every_event_exposes_only_clicks_extend_the_sequence_and_popularity() -> None:
    fx = effects_of([ev(1, 1, 10, "impression", 100), ev(2, 1, 11, "click", 101), ev(3, 1, 12, "dwell", 102, dwell_ms=5)])
    assert fx.exposures == {1: {10: 100, 11: 101, 12: 102}}
    assert fx.clicks == {1: [11]} and dict(fx.popularity) == {11: 1}


def test_events_label_their_request_and_item() -> None:
    fx = effects_of([
        ev(1, 1, 10, "impression", 100, "r1"), ev(2, 1, 10, "click", 101, "r1"), ev(3, 1, 10, "dwell", 102, "r1", 4_000),
        ev(4, 1, 10, "dwell", 103, "r1", 2_500), ev(5, 1, 11, "impression", 100, "r1"), ev(6, 2, 10, "click", 100, "r2"),
        ev(7, 3, 10, "click", 100),  # no request id: nothing to label
    ])
    assert {r: dict(c) for r, c in fx.labels.items()} == {
        "r1": {"impressions:10": 1, "clicks:10": 1, "dwell_ms:10": 6_500, "impressions:11": 1},
        "r2": {"clicks:10": 1},
    }


def test_clicks_are_ordered_by_timestamp_and_exposure_keeps_the_latest() -> None:
    fx = effects_of([ev(1, 2, 30, "click", 200), ev(2, 2, 31, "click", 150), ev(3, 2, 30, "impression", 120),
                     ev(4, 3, 30, "click", 150)])
    assert fx.clicks == {2: [31, 30], 3: [30]}
    assert fx.exposures[2] == {30: 200, 31: 150}
    assert dict(fx.popularity) == {30: 2, 31: 1}


def test_no_events_no_effects() -> None:
    fx = effects_of([])
    assert fx.exposures == {} and fx.clicks == {} and not fx.popularity


def test_clicks_add_the_popular_channels_decayed_increment() -> None:
    """Serving weights each click by exp((ts - epoch) / tau): a later click counts e times more per tau."""
    import math

    import pytest

    from cascade.recall.popular import decayed_increment

    tau = 3_600.0
    events = [ev(1, 1, 5, "click", 1_767_300_000), ev(2, 2, 5, "click", 1_767_303_600)]
    fx = effects_of(events, lambda ts: decayed_increment(ts, tau))
    assert fx.popularity[5] == pytest.approx(decayed_increment(1_767_300_000, tau) * (1 + math.e))
