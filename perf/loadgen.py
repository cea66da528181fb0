"""Our own load generator for the orchestrator's HTTP API (`POST {url}/v1/recommend`), closed or open loop.

    python -m perf.loadgen --url http://127.0.0.1:8080 --users 0:5000 --concurrency 1,4,16
    python -m perf.loadgen --url http://127.0.0.1:8080 --users 0:5000 --rate 50,100,150 --connections 64

Closed loop (--concurrency): that many workers, each on its own keep-alive connection, send a
request, wait for the answer and send the next, until --duration (or the optional --requests cap)
runs out. Latency runs from building the request to reading the answer.

Open loop (--rate): request i is due at t0 + i/rate for --duration seconds, whether or not earlier
ones were answered. It takes a free connection from a pool of --connections, or waits for one;
latency runs from when the request was due (perf.openloop), so the generator's own queueing counts.
Reported beside the figures: the rate the requests actually started at, and how many started more
than 1 ms late. Requests that find no connection before the level's end + --timeout are not sent
and count as errors.

Bodies are `{"user_id": <int>, "k": <int>}`; ids come from --users, a --unknown-fraction of them
from far outside it (cold start). The client is a raw HTTP/1.1 one (perf.rawhttp) on uvloop when it
is installed, to keep the generator's CPU small next to the stack's; that CPU, and the CPU of every
process of the stack (perf.stackcpu), is measured per level. Percentiles are over 200 answers only.
Only loopback targets are accepted.

Writes `<prefix>_table.md`, `<prefix>_levels.csv`, `<prefix>_run.json` (perf.loadtable; the JSON
holds the orchestrator's CASCADE_* settings), `<prefix>.csv` in perf_analyzer's format (perf.csvfmt)
and `<prefix>_throughput_p99.png`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import numpy as np

from orchestrator.clients.http1 import Connection, HttpError
from perf import openloop
from perf.csvfmt import CONCURRENCY, REQUEST_RATE, Row, percentile, summarise, to_csv
from perf.loadtable import LevelResult, format_load_table, write_results
from perf.loopback import require_loopback_url
from perf.plot import plot_throughput_latency
from perf.rawhttp import Outcome, build_request, classify_answer
from perf.run_triton import parse_levels
from perf.stackcpu import (
    CpuSample, StackSampler, add_orchestrator_pids, describe, discover, machine_note, orchestrator_settings, pids_by_name,
)

RESULTS = Path(__file__).resolve().parent / "results"
UNKNOWN_USER_BASE = 1_000_000_000  # far above any catalogue of users: always a cold start
PATH = "/v1/recommend"
T = TypeVar("T")


def parse_user_range(text: str) -> tuple[int, int]:
    """'lo:hi' (hi exclusive) -> (lo, hi)."""
    try:
        lo, hi = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--users wants lo:hi, got {text!r}") from None
    if not 0 <= lo < hi:
        raise argparse.ArgumentTypeError(f"--users range {text!r} is empty or negative")
    return lo, hi


def draw_users(rng: np.random.Generator, n: int, users: tuple[int, int], unknown_fraction: float) -> np.ndarray:
    known = rng.integers(users[0], users[1], size=n)
    unknown = UNKNOWN_USER_BASE + rng.integers(0, 1_000_000, size=n)
    return np.where(rng.random(n) < unknown_fraction, unknown, known)


def user_stream(
    rng: np.random.Generator, users: tuple[int, int], unknown_fraction: float, chunk: int = 4096
) -> Iterator[int]:
    """An endless stream of user ids, drawn `chunk` at a time."""
    while True:
        yield from draw_users(rng, chunk, users, unknown_fraction).tolist()


@dataclass
class Target:
    host: str
    port: int
    k: int

    @classmethod
    def from_url(cls, url: str, k: int) -> Target:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise SystemExit(f"{url!r}: the raw client speaks plain http only")
        return cls(parts.hostname or "127.0.0.1", parts.port or 80, k)

    def request(self, user: int) -> bytes:
        return build_request(f"{self.host}:{self.port}", PATH, json.dumps({"user_id": user, "k": self.k}).encode())

    def connection(self) -> Connection:
        return Connection(self.host, self.port)


@dataclass
class Tally:
    """Everything one level counted. Latencies are of 200 answers, in µs."""

    latencies_us: list[int] = field(default_factory=list)
    send_us: list[int] = field(default_factory=list)  # building the request bytes
    recv_us: list[int] = field(default_factory=list)  # reading the answer's JSON
    outcomes: Counter = field(default_factory=Counter)  # Outcome -> count
    errors: Counter = field(default_factory=Counter)  # exception class (or "not started") -> count
    degraded: int = 0
    ranked: int = 0
    sent: int = 0
    late: int = 0  # open loop: started > 1 ms after due
    first_start_ns: int = 0
    last_start_ns: int = 0
    elapsed_s: float = 0.0

    def started(self, now_ns: int) -> None:
        self.sent += 1
        self.first_start_ns = self.first_start_ns or now_ns
        self.last_start_ns = now_ns

    def percentile_ms(self, p: float) -> float | None:
        return percentile(sorted(self.latencies_us), p) / 1000 if self.latencies_us else None


async def exchange(conn: Connection, data: bytes, timeout_s: float, tally: Tally, since_ns: int) -> None:
    """Send one request and count its answer; its latency runs from `since_ns`."""
    try:
        async with asyncio.timeout(timeout_s):
            response = await conn.request(data)
    except (OSError, TimeoutError, HttpError, asyncio.IncompleteReadError) as err:
        tally.errors[type(err).__name__] += 1
        return
    read_ns = time.perf_counter_ns()
    answer = classify_answer(response.status, response.body)
    done_ns = time.perf_counter_ns()
    tally.outcomes[answer.outcome] += 1
    if answer.outcome is Outcome.OK:
        tally.latencies_us.append(openloop.latency_us(since_ns, done_ns))
        tally.recv_us.append((done_ns - read_ns) // 1000)
        tally.degraded += answer.degraded
        tally.ranked += answer.ranked


def encode(target: Target, user: int, tally: Tally) -> bytes:
    t0 = time.perf_counter_ns()
    data = target.request(user)
    tally.send_us.append((time.perf_counter_ns() - t0) // 1000)
    return data


async def closed_loop(target: Target, conns: list[Connection], users: Iterator[int], duration_s: float,
                      max_requests: int | None, timeout_s: float) -> Tally:
    tally = Tally()
    start = time.perf_counter()
    deadline = start + duration_s

    async def worker(conn: Connection) -> None:
        while time.perf_counter() < deadline and (max_requests is None or tally.sent < max_requests):
            t0 = time.perf_counter_ns()
            tally.started(t0)
            await exchange(conn, encode(target, next(users), tally), timeout_s, tally, t0)

    await asyncio.gather(*(worker(c) for c in conns))
    tally.elapsed_s = time.perf_counter() - start
    return tally


async def open_loop(target: Target, conns: list[Connection], users: Iterator[int], rate: float, n: int,
                    timeout_s: float) -> Tally:
    tally = Tally()
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for conn in conns:
        pool.put_nowait(conn)
    t0 = time.perf_counter_ns()
    give_up_ns = openloop.intended_ns(t0, n, rate) + int(timeout_s * 1e9)

    async def one(due: int, user: int) -> None:
        conn = await pool.get()
        try:
            now = time.perf_counter_ns()
            if now > give_up_ns:
                tally.errors["not started"] += 1
                return
            tally.started(now)
            tally.late += openloop.is_late(due, now)
            await exchange(conn, encode(target, user, tally), timeout_s, tally, openloop.latency_origin(due, now))
        finally:
            pool.put_nowait(conn)

    tasks = []
    for i in range(n):
        due = openloop.intended_ns(t0, i, rate)
        wait_s = (due - time.perf_counter_ns()) / 1e9
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        tasks.append(asyncio.create_task(one(due, next(users))))
    await asyncio.gather(*tasks)
    tally.elapsed_s = (time.perf_counter_ns() - t0) / 1e9
    return tally


async def open_connections(target: Target, n: int) -> list[Connection]:
    conns = [target.connection() for _ in range(n)]
    try:
        await asyncio.gather(*(c.open() for c in conns))
    except OSError as err:
        raise SystemExit(f"cannot connect to {target.host}:{target.port}: {err}") from None
    return conns


def level_result(level: float, tally: Tally, sampler: StackSampler, before: CpuSample, open_loop_run: bool) -> LevelResult:
    extra = {"sent": tally.sent, "errors_by_kind": dict(tally.errors),
             "client_send_us_mean": int(np.mean(tally.send_us)) if tally.send_us else None,
             "client_recv_us_mean": int(np.mean(tally.recv_us)) if tally.recv_us else None}
    if open_loop_run:
        extra |= {"achieved_rate": round(openloop.achieved_rate(tally.sent, tally.first_start_ns, tally.last_start_ns), 2),
                  "late_starts": tally.late}
    return LevelResult(
        level, tally.elapsed_s, tally.outcomes[Outcome.OK], tally.outcomes[Outcome.SHED], tally.outcomes[Outcome.OTHER],
        sum(tally.errors.values()), tally.degraded, tally.ranked,
        tally.percentile_ms(50), tally.percentile_ms(90), tally.percentile_ms(99), sampler.between(before, sampler.sample()),
        extra,
    )


async def run_levels(args: argparse.Namespace, target: Target, sampler: StackSampler) -> tuple[list[LevelResult], list[Row]]:
    users = user_stream(np.random.default_rng(args.seed), args.users, args.unknown_fraction)
    results, rows = [], []
    for level in args.rate or args.concurrency:
        conns = await open_connections(target, args.connections if args.rate else level)
        if args.rate:  # run(n): n requests at the level's rate
            run = partial(open_loop, target, conns, users, level, timeout_s=args.timeout)
            measured = openloop.schedule_size(level, args.duration)
        else:  # run(cap): until --duration or cap requests
            run = partial(closed_loop, target, conns, users, args.duration, timeout_s=args.timeout)
            measured = args.requests
        if args.warmup:
            await run(args.warmup)
        before = sampler.sample()
        tally = await run(measured)
        for conn in conns:
            conn.close()
        result = level_result(level, tally, sampler, before, bool(args.rate))
        results.append(result)
        if tally.latencies_us:
            rows.append(summarise(level, tally.latencies_us, tally.elapsed_s, tally.send_us, tally.recv_us))
        late = f", started at {result.extra['achieved_rate']}/s, {tally.late} late" if args.rate else ""
        print(f"  {'rate' if args.rate else 'c'}={level:<5g} {tally.sent} sent in {tally.elapsed_s:.1f}s: "
              f"{result.rps:.1f} answered/s, p99 {result.p99_ms} ms, shed {result.shed}, non-2xx {result.other}, "
              f"errors {dict(tally.errors) or 0}{late}", flush=True)
    return results, rows


def run_async(main: Callable[[], Awaitable[T]]) -> tuple[T, str]:
    """Run on uvloop when it is installed (cheaper per request), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main()), "asyncio"
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main()), "uvloop"


def parse_rates(text: str) -> list[float]:
    rates = sorted({float(x) for x in text.split(",") if x.strip()})
    if not rates or rates[0] <= 0:
        raise argparse.ArgumentTypeError(f"bad rates {text!r}")
    return rates


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m perf.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8080", help="orchestrator base URL (loopback only)")
    p.add_argument("--users", type=parse_user_range, required=True, help="known user ids lo:hi (hi exclusive)")
    p.add_argument("--unknown-fraction", type=float, default=0.05, help="share of requests for unknown (cold-start) users")
    p.add_argument("--k", type=int, default=10)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--concurrency", type=parse_levels,
                      help="closed loop: workers per level, comma-separated (default 1,4,16)")
    mode.add_argument("--rate", type=parse_rates, help="open loop: requests per second per level, comma-separated")
    p.add_argument("--connections", type=int, default=64, help="open loop: connection pool size")
    p.add_argument("--requests", type=int, default=None, help="closed loop: stop a level after this many requests")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per level")
    p.add_argument("--warmup", type=int, default=50, help="unmeasured requests before each level, at its load")
    p.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, seconds")
    p.add_argument("--seed", type=int, default=0)
    add_orchestrator_pids(p)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--prefix", default="loadgen")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    url = require_loopback_url(args.url)
    if args.rate is None and args.concurrency is None:
        args.concurrency = [1, 4, 16]
    if not 0.0 <= args.unknown_fraction <= 1.0:
        raise SystemExit("--unknown-fraction must lie in [0, 1]")
    if args.duration <= 0 or args.connections < 1 or (args.requests is not None and args.requests < 1):
        raise SystemExit("--duration, --connections and --requests must be positive")
    target = Target.from_url(url, args.k)
    processes = discover(args.orchestrator_pids)
    mode, load_name = ("open loop", "rate") if args.rate else ("closed loop", "concurrency")
    print(f"POST {url}{PATH} ({mode}), users {args.users[0]}:{args.users[1]} + {args.unknown_fraction:.0%} unknown, "
          f"k={args.k}, levels {args.rate or args.concurrency}, {args.duration:g}s each")
    print(describe(processes))
    note = {
        "tool": "loadgen", "mode": mode, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "url": url,
        "users": list(args.users), "unknown_fraction": args.unknown_fraction, "k": args.k,
        "duration_per_level_s": args.duration, "requests_cap": args.requests, "warmup_requests": args.warmup,
        "timeout_s": args.timeout, "connections": args.connections if args.rate else None,
        "machine": machine_note(), "processes": pids_by_name(processes),
        "orchestrator": orchestrator_settings(processes),
        "notes": "req/s = 200 answers / level time; percentiles over 200 answers; open loop: latency from due time",
    }
    sampler = StackSampler(processes)
    (results, rows), note["event_loop"] = run_async(lambda: run_levels(args, target, sampler))
    paths = write_results(args.results, args.prefix, results, note, load_name)
    csv_path = args.results / f"{args.prefix}.csv"
    csv_path.write_text(to_csv(rows, REQUEST_RATE if args.rate else CONCURRENCY))
    plot_throughput_latency({"orchestrator": rows}, args.results / f"{args.prefix}_throughput_p99.png",
                            f"orchestrator POST {PATH} ({mode}), {sampler.n_cpus} CPU cores",
                            "rate" if args.rate else "c")
    print()
    print(format_load_table(results, load_name))
    print("\nwrote " + ", ".join(str(p) for p in [*paths, csv_path]) + " and the plot")
    return 1 if any(r.ok == 0 for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
