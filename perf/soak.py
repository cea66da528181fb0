"""A soak: a constant arrival rate for minutes against a running stack, and each process's memory.

    python -m perf.soak --url http://127.0.0.1:8080 --rate 250 --minutes 10 [--redis-url redis://127.0.0.1:6379/0]

The load is `perf.loadgen`'s open loop (one run of `--minutes`, latency from each request's due
time), started as a subprocess beside this one. Every `--every-s` seconds this samples the RSS of
every stack process (`perf.stackcpu.discover`: the orchestrator's processes, tritonserver, each
stub, redis-server) and Redis's `used_memory`. At the end it prints, per process, the RSS at the
first sample after warm-up, at the end and the growth in percent, with the load's answered rate,
p99 and degraded share, and writes them as JSON (`--out`). The bar it reports against: RSS growth
< 10 % per process, Redis memory bounded (its maxmemory, or its growth).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import redis

from perf.stackcpu import discover, pids_by_name

GROWTH_BAR = 0.10


def rss_mb(pids: dict[str, list[int]]) -> dict[str, float]:
    """Per process role, the RSS of its processes added up (the orchestrator's workers together)."""
    out = {}
    for name, group in pids.items():
        try:
            out[name] = sum(psutil.Process(pid).memory_info().rss for pid in group) / 2**20
        except psutil.NoSuchProcess:
            out[name] = float("nan")
    return out


def redis_memory_mb(client: redis.Redis | None) -> float | None:
    if client is None:
        return None
    try:
        return float(client.info("memory")["used_memory"]) / 2**20
    except (redis.RedisError, OSError):
        return None


def redis_maxmemory_mb(client: redis.Redis | None) -> float | None:
    """Redis's configured bound (None: unbounded, or no Redis given)."""
    if client is None:
        return None
    value = int(client.config_get("maxmemory").get("maxmemory", 0))
    return value / 2**20 if value else None


def growth_table(first: dict[str, float], last: dict[str, float]) -> list[dict]:
    """Per process: RSS after warm-up, at the end, growth as a share, and whether it is under the bar.
    redis-server holds the data (samples stream, exposure, trending), which grows up to its bounds by
    design: it is judged by its used memory against its maxmemory instead."""
    rows = []
    for name in (n for n in first if not n.startswith("redis-server")):
        growth = (last[name] - first[name]) / first[name] if first[name] else float("nan")
        rows.append({"process": name, "first_mb": round(first[name], 1), "last_mb": round(last[name], 1),
                     "growth": round(growth, 4), "within_bar": bool(growth < GROWTH_BAR)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second (70 %% of the sustained rate)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=60.0, help="the first sample compared is taken after this")
    parser.add_argument("--every-s", type=float, default=30.0)
    parser.add_argument("--users", default="0:5000")
    parser.add_argument("--redis-url", default=None, help="to sample Redis's used_memory")
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results" / "soak")
    parser.add_argument("--out", type=Path, default=None, help="JSON (default: <results>/soak.json)")
    args = parser.parse_args(argv)
    pids = pids_by_name(discover())
    if not pids:
        print("soak: no stack process found: start the stack first (make up)", file=sys.stderr)
        return 2
    client = redis.from_url(args.redis_url) if args.redis_url else None
    duration = args.minutes * 60
    load = subprocess.Popen([
        sys.executable, "-m", "perf.loadgen", "--url", args.url, "--users", args.users, "--rate", str(args.rate),
        "--duration", str(duration), "--warmup", "50", "--results", str(args.results), "--prefix", "soak",
    ])
    samples, started = [], time.monotonic()
    while load.poll() is None:
        time.sleep(args.every_s)
        samples.append({"t_s": round(time.monotonic() - started, 1), "rss_mb": rss_mb(pids), "redis_mb": redis_memory_mb(client)})
        print(f"soak t={samples[-1]['t_s']:.0f}s " + ", ".join(f"{n} {v:.0f} MB" for n, v in samples[-1]["rss_mb"].items())
              + (f", redis data {samples[-1]['redis_mb']:.1f} MB" if samples[-1]["redis_mb"] is not None else ""), flush=True)
    if load.returncode != 0 or len(samples) < 2:
        print(f"soak: the load ended with status {load.returncode} after {len(samples)} samples", file=sys.stderr)
        return 1
    first = next((s for s in samples if s["t_s"] >= args.warmup_s), samples[0])
    max_mb = redis_maxmemory_mb(client)
    redis_bounded = max_mb is None or samples[-1]["redis_mb"] is None or samples[-1]["redis_mb"] <= max_mb
    table = growth_table(first["rss_mb"], samples[-1]["rss_mb"])
    level = json.loads((args.results / "soak_run.json").read_text())["levels"][0]
    report = {
        "rate": args.rate, "minutes": args.minutes, "samples": samples, "rss": table,
        "load": {k: level.get(k) for k in ("answered_rps", "p50_ms", "p99_ms", "shed", "degraded_share", "ranked_share")},
        "redis_mb": {"first": first["redis_mb"], "last": samples[-1]["redis_mb"], "max": max_mb,
                     "redis_server_rss_first": first["rss_mb"].get("redis-server"),
                     "redis_server_rss_last": samples[-1]["rss_mb"].get("redis-server")},
    }
    out = args.out or args.results / "soak.json"
    out.write_text(json.dumps(report, indent=2))
    print("| process | RSS after warm-up MB | RSS at the end MB | growth | < 10 % |\n|---|---:|---:|---:|---|")
    for row in table:
        print(f"| {row['process']} | {row['first_mb']} | {row['last_mb']} | {100 * row['growth']:.1f} % | {'yes' if row['within_bar'] else 'NO'} |")
    print(f"load: {json.dumps(report['load'])}; redis data MB {report['redis_mb']} -> {out}")
    return 0 if all(r["within_bar"] for r in table) and redis_bounded else 1


if __name__ == "__main__":
    sys.exit(main())
