"""Open-loop arithmetic: when each request is due, and what its latency is.

Request i of a level at `rate` req/s is due at t0 + i/rate, whatever happened to earlier ones.
Its latency runs from that intended time, not from when it was actually sent: time spent waiting
for the generator's timer or for a free connection is queueing the user would have seen, so it
is counted (hiding it is coordinated omission). All times are integer perf_counter nanoseconds.
"""
from __future__ import annotations

import math

LATE_NS = 1_000_000  # a request that starts more than 1 ms after it was due is late


def schedule_size(rate: float, duration_s: float) -> int:
    """Requests due in a window of `duration_s` seconds (the one due at t0 included)."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError(f"rate and duration must be positive, got {rate}, {duration_s}")
    return max(1, math.ceil(rate * duration_s - 1e-9))


def intended_ns(t0_ns: int, i: int, rate: float) -> int:
    return t0_ns + round(i * 1_000_000_000 / rate)


def latency_origin(due: int, started: int) -> int:
    """Where a request's latency starts: when it was due, or when it really started if that was
    earlier (a timer may fire a fraction of a millisecond early; the request is then timed from its send)."""
    return min(due, started)


def latency_us(origin: int, done: int) -> int:
    """Microseconds from the latency's origin to when the answer was read."""
    if done < origin:
        raise ValueError("an answer cannot come before its request started")
    return (done - origin) // 1000


def is_late(intended: int, started: int, threshold_ns: int = LATE_NS) -> bool:
    return started - intended > threshold_ns


def achieved_rate(count: int, first_start_ns: int, last_start_ns: int) -> float:
    """Requests actually started per second: `count` starts spread from the first to the last.

    The gaps between n starts are n - 1; a single start has no rate (0.0).
    """
    span = last_start_ns - first_start_ns
    return (count - 1) * 1e9 / span if count > 1 and span > 0 else 0.0
