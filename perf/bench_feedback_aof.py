"""Feedback events per second through `FeedbackStore` against a local redis-server, by AOF fsync policy.

    python -m perf.bench_feedback_aof                      # 20,000 events per cell, 8 concurrent callers
    python -m perf.bench_feedback_aof --events 5000 --callers 16

For each persistence mode (`appendfsync everysec`, `always`, and the AOF off) a fresh redis-server is
started in a temporary directory (`cascade.servers.redis.start_redis`), and for each batch size
`--callers` concurrent callers post `--events` new events in all (a mix of impressions, clicks and
dwells over 1,000 users, each event with its own request id) through one store, as the
orchestrator's feedback route does. It prints a markdown table: events/s and batches/s per mode and
batch size, and the p50 / p99 milliseconds of one `record` call. `always` fsyncs the AOF on every
write before replying, so on a slow disk it is bounded by the disk's fsync rate.
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
import redis.asyncio as redis

from cascade.feedback import Event
from cascade.servers.process import free_port
from cascade.servers.redis import start_redis
from orchestrator.clients.feedback import FeedbackLimits, FeedbackStore

MODES: dict[str, str | None] = {"everysec": "everysec", "always": "always", "off": None}
BATCHES = (1, 20, 100, 500)
LIMITS = FeedbackLimits(2 * 86_400, 7 * 86_400, 5_000, 7 * 86_400, 50, 86_400.0, 2 * 86_400)
KINDS = ("impression", "impression", "impression", "click", "dwell")


def make_events(n: int, prefix: str, now: int) -> list[Event]:
    """n distinct events: impressions, clicks and dwells over 1,000 users and 10,000 items."""
    return [
        Event(f"{prefix}-{i}", i % 1_000, (i * 7) % 10_000, KINDS[i % 5], now, f"{prefix}-r{i // 5}",
              1_000 if KINDS[i % 5] == "dwell" else 0)
        for i in range(n)
    ]


async def run_cell(store: FeedbackStore, events: list[Event], batch: int, callers: int) -> tuple[float, list[float]]:
    """(wall seconds, per-call seconds) for `events` posted in batches of `batch` by `callers` tasks."""
    batches = [events[i:i + batch] for i in range(0, len(events), batch)]
    latencies: list[float] = []

    async def caller(mine: list[list[Event]]) -> None:
        for b in mine:
            start = time.perf_counter()
            await store.record(b)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(caller(batches[c::callers]) for c in range(callers)))
    return time.perf_counter() - start, latencies


async def bench_mode(mode: str, events_per_cell: int, callers: int) -> list[tuple]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-aof-") as work:
        port = free_port()
        process = await asyncio.to_thread(start_redis, port, Path(work), appendfsync=MODES[mode])
        client = redis.from_url(f"redis://127.0.0.1:{port}", max_connections=callers)
        try:
            store = FeedbackStore(client, LIMITS)
            now = int(time.time())
            await run_cell(store, make_events(2_000, f"warm-{mode}", now), 100, callers)
            for batch in BATCHES:
                wall, latencies = await run_cell(store, make_events(events_per_cell, f"{mode}-{batch}", now), batch, callers)
                ms = np.asarray(latencies) * 1e3
                rows.append((mode, batch, events_per_cell / wall, len(latencies) / wall,
                             float(np.percentile(ms, 50)), float(np.percentile(ms, 99))))
        finally:
            await client.aclose()
            await asyncio.to_thread(process.stop)
    return rows


def table(rows: list[tuple]) -> str:
    lines = ["| AOF | batch | events/s | batches/s | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {m} | {b} | {e:,.0f} | {c:,.0f} | {p50:.2f} | {p99:.2f} |" for m, b, e, c, p50, p99 in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per (mode, batch size) cell")
    parser.add_argument("--callers", type=int, default=8, help="concurrent record() callers")
    args = parser.parse_args()
    rows = [row for mode in MODES for row in asyncio.run(bench_mode(mode, args.events, args.callers))]
    print(f"feedback through FeedbackStore, {args.events} events per cell, {args.callers} callers")
    print(table(rows))


if __name__ == "__main__":
    main()
