"""What a batch of new feedback events writes: long-term exposures, live clicks in time order, click counts."""
from __future__ import annotations

from cascade.feedback import Event, effects_of


def ev(n: int, user: int, item: int, kind: str, ts: int) -> Event:
    return Event(f"e{n}", user, item, kind, ts)


def test_impressions_and_clicks_expose_dwell_does_not() -> None:
    fx = effects_of([ev(1, 1, 10, "impression", 100), ev(2, 1, 11, "click", 101), ev(3, 1, 12, "dwell", 102)])
    assert fx.exposures == {1: {10: 100, 11: 101}}
    assert fx.clicks == {1: [11]} and dict(fx.popularity) == {11: 1}


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
