"""Closed-loop load generator for the orchestrator's HTTP API (`POST {url}/v1/recommend`).

    python -m perf.loadgen --url http://127.0.0.1:8080 --users 0:5000 --concurrency 1,4,16

At each concurrency level, that many workers each send one request, wait for the answer and send
the next, until the level's request budget (--requests) or time budget (--duration) runs out,
whichever comes first. Bodies are `{"user_id": <int>, "k": <int>}`; user ids are drawn from the
--users range, and a --unknown-fraction of them from far outside it (cold start). Only loopback
targets are accepted.

Writes perf_analyzer's CSV (perf.csvfmt; latencies and throughput over successful answers;
Client Send / Client Recv are the mean µs spent encoding the body / decoding the answer), a
throughput-vs-p99 plot, and a JSON note with the errors (non-200 answers and transport failures)
per level, which are also printed.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from perf.csvfmt import Row, format_table, summarise, to_csv
from perf.loopback import require_loopback_url
from perf.plot import plot_throughput_latency

RESULTS = Path(__file__).resolve().parent / "results"
UNKNOWN_USER_BASE = 1_000_000_000  # far above any catalogue of users: always a cold start


@dataclass
class LevelStats:
    concurrency: int
    latencies_us: list[int] = field(default_factory=list)
    send_us: list[int] = field(default_factory=list)
    recv_us: list[int] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # "HTTP 503" / exception class name -> count
    sent: int = 0
    elapsed_s: float = 0.0

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())

    def row(self) -> Row | None:
        if not self.latencies_us:
            return None
        return summarise(self.concurrency, self.latencies_us, self.elapsed_s, self.send_us, self.recv_us)


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


async def run_level(
    url: str, concurrency: int, user_ids: np.ndarray, k: int, duration_s: float, timeout_s: float
) -> LevelStats:
    import httpx

    stats = LevelStats(concurrency)
    endpoint = f"{url}/v1/recommend"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/json"}
    next_index = 0

    async with httpx.AsyncClient(limits=limits, timeout=timeout_s, trust_env=False) as client:
        started = time.perf_counter()
        deadline = started + duration_s

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(user_ids) and time.perf_counter() < deadline:
                user = int(user_ids[next_index])
                next_index += 1
                t0 = time.perf_counter_ns()
                body = json.dumps({"user_id": user, "k": k}).encode()
                t1 = time.perf_counter_ns()
                try:
                    response = await client.post(endpoint, content=body, headers=headers)
                    t2 = time.perf_counter_ns()
                    if response.status_code == 200:
                        response.json()
                        t3 = time.perf_counter_ns()
                        stats.latencies_us.append((t3 - t0) // 1000)
                        stats.send_us.append((t1 - t0) // 1000)
                        stats.recv_us.append((t3 - t2) // 1000)
                    else:
                        stats.errors[f"HTTP {response.status_code}"] += 1
                except (httpx.HTTPError, ValueError) as err:  # transport failure, timeout, body not JSON
                    stats.errors[type(err).__name__] += 1
                stats.sent += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        stats.elapsed_s = time.perf_counter() - started
    return stats


async def run_all(args: argparse.Namespace, url: str) -> list[LevelStats]:
    rng = np.random.default_rng(args.seed)
    out = []
    for level in args.concurrency:
        if args.warmup:
            await run_level(url, level, draw_users(rng, args.warmup, args.users, args.unknown_fraction), args.k,
                            args.duration, args.timeout)
        stats = await run_level(url, level, draw_users(rng, args.requests, args.users, args.unknown_fraction), args.k,
                                args.duration, args.timeout)
        row = stats.row()
        what = f"{row.throughput:.1f} req/s, p50 {row.p50_us} us, p99 {row.p99_us} us" if row else "no successful answer"
        errors = ", ".join(f"{k} x{v}" for k, v in stats.errors.most_common()) or "none"
        print(f"  c={level:<3} {stats.sent} sent in {stats.elapsed_s:.1f}s: {what}; errors: {errors}", flush=True)
        out.append(stats)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m perf.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8080", help="orchestrator base URL (loopback only)")
    p.add_argument("--users", type=parse_user_range, required=True, help="known user ids lo:hi (hi exclusive)")
    p.add_argument("--unknown-fraction", type=float, default=0.05, help="share of requests for unknown (cold-start) users")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--concurrency", type=lambda s: sorted({int(x) for x in s.split(",")}), default=[1, 4, 16],
                   help="comma-separated levels")
    p.add_argument("--requests", type=int, default=2000, help="request budget per level")
    p.add_argument("--duration", type=float, default=15.0, help="time budget per level, seconds")
    p.add_argument("--warmup", type=int, default=50, help="unmeasured requests before each level")
    p.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--prefix", default="loadgen")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    url = require_loopback_url(args.url)
    if not 0.0 <= args.unknown_fraction <= 1.0:
        raise SystemExit("--unknown-fraction must lie in [0, 1]")
    if min(args.concurrency) < 1 or args.requests < 1 or args.duration <= 0:
        raise SystemExit("concurrency levels, --requests and --duration must be positive")
    print(f"POST {url}/v1/recommend, users {args.users[0]}:{args.users[1]} + {args.unknown_fraction:.0%} unknown, "
          f"k={args.k}, levels {args.concurrency}, at most {args.requests} requests / {args.duration:g}s each")
    levels = asyncio.run(run_all(args, url))
    rows = {"orchestrator": [r for s in levels if (r := s.row())]}
    args.results.mkdir(parents=True, exist_ok=True)
    csv_path = args.results / f"{args.prefix}.csv"
    csv_path.write_text(to_csv(rows["orchestrator"]))
    plot_throughput_latency(rows, args.results / f"{args.prefix}_throughput_p99.png",
                            f"orchestrator POST /v1/recommend (closed loop), {os.cpu_count()} CPU cores")
    note = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "url": url, "users": list(args.users), "unknown_fraction": args.unknown_fraction, "k": args.k,
        "requests_per_level": args.requests, "duration_per_level_s": args.duration, "warmup": args.warmup,
        "levels": [{"concurrency": s.concurrency, "sent": s.sent, "ok": len(s.latencies_us), "errors": dict(s.errors),
                    "elapsed_s": round(s.elapsed_s, 2)} for s in levels],
    }
    (args.results / f"{args.prefix}_run.json").write_text(json.dumps(note, indent=2) + "\n")
    table = format_table(rows)
    (args.results / f"{args.prefix}_table.md").write_text(table + "\n")
    print()
    print(table)
    print("\nerrors per level: " + "; ".join(f"c={s.concurrency}: {s.n_errors}/{s.sent}" for s in levels))
    print(f"CSV {csv_path}; table, plot and run note (with the errors) beside it")
    return 1 if any(not s.latencies_us for s in levels) else 0


if __name__ == "__main__":
    sys.exit(main())
