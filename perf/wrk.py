"""Closed-loop load on the orchestrator with wrk and `perf/count.lua`: the measurement that counts.

    python -m perf.wrk --url http://127.0.0.1:8080 --levels 1,2,4,8,16 --duration 10
    python -m perf.wrk --endpoint lookalike --users 100000 --k 100 --near-share 0.5 --prefix lookalike

`--endpoint lookalike` drives POST /v1/lookalike with `perf/lookalike.lua` instead: five random seed
users below `--users`, `k`, and `near` (10 km around one of 64 exported users' places, read from
CASCADE_ARTIFACTS_DIR's users.npz) on a `--near-share` of requests; "ranked" counts answers the
look-alike scorer scored (`scored_by: model`).

Per level: `wrk -t<threads> -c<level> -d<duration>s --latency -s perf/count.lua <url>/v1/recommend`
(one wrk thread unless --threads says more: one thread drives thousands of requests per second,
far above what the stack answers, and a second would take a core from a 2-core stack), while the
stack's processes are sampled for CPU (perf.stackcpu). The rate reported is answered 200s per
second, ok / wrk's measured duration; the `rps` of count.lua's COUNTS line counts every request,
503s included, and is kept in the JSON as `wrk_rps_all`. Percentiles are wrk's, over every answer
whatever its status (503s included, so under shedding they look better than the 200s alone).
wrk's own CPU is read from the kernel's account of finished children (getrusage).
"""
from __future__ import annotations

import argparse
import re
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from perf.loadtable import LevelResult, format_load_table, write_results
from perf.loopback import require_loopback_url
from perf.run_triton import parse_levels
from perf.stackcpu import (
    StackSampler, add_orchestrator_pids, describe, discover, machine_note, orchestrator_settings, pids_by_name,
)

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "count.lua"
LOOKALIKE_SCRIPT = HERE / "lookalike.lua"
RESULTS = HERE / "results"
UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
COUNT_FIELDS = ("ok", "shed", "non200", "degraded", "ranked")
SOCKET_ERRORS = ("connect", "read", "write", "timeout")


@dataclass(frozen=True)
class WrkRun:
    ok: int
    shed: int
    non200: int
    degraded: int
    ranked: int
    rps_all: float  # every request per second, as count.lua prints it
    requests: int
    duration_s: float
    percentiles_ms: dict[int, float]  # 50, 75, 90, 99
    socket_errors: dict[str, int]  # connect, read, write, timeout (all 0 when wrk printed no such line)


def parse_time_ms(text: str) -> float:
    """wrk's time format (`127.00us`, `2.23ms`, `10.00s`, `1.00m`) in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a wrk time: {text!r}")
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def parse_wrk_output(text: str) -> WrkRun:
    """The numbers of a `wrk --latency -s count.lua` run; ValueError if a part is missing."""
    counts = re.search(r"^COUNTS (.*)$", text, re.M)
    if not counts:
        raise ValueError("no COUNTS line: was wrk run with -s perf/count.lua?")
    fields = dict(kv.split("=", 1) for kv in counts.group(1).split())
    total = re.search(r"^\s*(\d+) requests in (\S+),", text, re.M)
    if not total:
        raise ValueError("no '<n> requests in <time>' line")
    dist = re.search(r"Latency Distribution\n((?:\s+\d+%\s+\S+\n?)+)", text)
    if not dist:
        raise ValueError("no latency distribution: was wrk run with --latency?")
    percentiles = {int(p): parse_time_ms(t) for p, t in re.findall(r"(\d+)%\s+(\S+)", dist.group(1))}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    socket_errors = dict(zip(SOCKET_ERRORS, (int(x) for x in errors.groups()) if errors else (0,) * len(SOCKET_ERRORS)))
    return WrkRun(*(int(fields[k]) for k in COUNT_FIELDS), float(fields["rps"]), int(total.group(1)),
                  parse_time_ms(total.group(2)) / 1000, percentiles, socket_errors)


@dataclass(frozen=True)
class Target:
    """What wrk drives: a path, its Lua script, and the script's arguments."""

    path: str = "/v1/recommend"
    script: Path = SCRIPT
    args: tuple[str, ...] = ()


def lookalike_target(users: int, k: int, near_share: float, points: list[tuple[float, float]]) -> Target:
    spots = ";".join(f"{lat:.5f},{lon:.5f}" for lat, lon in points)
    return Target("/v1/lookalike", LOOKALIKE_SCRIPT, (str(users), str(k), f"{near_share:g}", spots))


def exported_places(n: int, seed: int = 0) -> list[tuple[float, float]]:
    """`n` located users' places from the export CASCADE_ARTIFACTS_DIR names."""
    import numpy as np

    from cascade.artifacts import ArtifactPaths
    from cascade.lookalike.users import UserTable
    from cascade.settings import load_settings

    table = UserTable.load(ArtifactPaths(load_settings().artifacts_dir).users)
    located = np.flatnonzero(table.located)
    chosen = np.random.default_rng(seed).choice(located, min(n, len(located)), replace=False)
    return [(float(table.lat[u]), float(table.lon[u])) for u in chosen]


def wrk_argv(wrk: str, url: str, connections: int, duration_s: int, threads: int, timeout_s: float,
             target: Target = Target()) -> list[str]:
    argv = [wrk, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{duration_s}s", f"--timeout={timeout_s:g}s",
            "--latency", "-s", str(target.script), f"{url}{target.path}"]
    return argv + ["--", *target.args] if target.args else argv


def children_cpu() -> float:
    """user + system seconds of every child this process has waited for (here: the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(argv: list[str], duration_s: int) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def run_level(sampler: StackSampler, argv: list[str], level: int, duration_s: int) -> tuple[LevelResult, str]:
    before = sampler.sample()
    output = run_wrk(argv, duration_s)
    cpu = sampler.between(before, sampler.sample())
    run = parse_wrk_output(output)
    p = run.percentiles_ms
    result = LevelResult(
        level, run.duration_s, run.ok, run.shed, run.non200, sum(run.socket_errors.values()), run.degraded, run.ranked,
        p.get(50), p.get(90), p.get(99), cpu,
        extra={"wrk_rps_all": run.rps_all, "wrk_requests": run.requests, "wrk_percentiles_ms": p,
               "wrk_socket_errors": run.socket_errors},
    )
    return result, output


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m perf.wrk", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8080", help="orchestrator base URL (loopback only)")
    p.add_argument("--levels", type=parse_levels, default=[1, 2, 4, 8, 16],
                   help="connections per level: 1,2,4 or start:end:step")
    p.add_argument("--duration", type=int, default=10, help="seconds per level")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured wrk seconds before each level (0: none)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (capped at the level)")
    p.add_argument("--timeout", type=float, default=2.0, help="wrk's socket timeout, seconds")
    p.add_argument("--endpoint", choices=("recommend", "lookalike"), default="recommend")
    p.add_argument("--users", type=int, default=5_000, help="lookalike: seeds are drawn below this user id")
    p.add_argument("--k", type=int, default=100, help="lookalike: users per answer")
    p.add_argument("--near-share", type=float, default=0.0, help="lookalike: share of requests with `near`")
    add_orchestrator_pids(p)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--prefix", default="wrk")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    url = require_loopback_url(args.url)
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: `apt-get install wrk` (Debian/Ubuntu)")
    if args.duration < 1 or args.threads < 1:
        raise SystemExit("--duration and --threads must be positive")
    target = Target()
    if args.endpoint == "lookalike":
        target = lookalike_target(args.users, args.k, args.near_share, exported_places(64) if args.near_share > 0 else [])
    processes = discover(args.orchestrator_pids)
    print(describe(processes))
    note = {
        "tool": "wrk", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "url": url,
        "script": str(target.script.relative_to(HERE.parent)), "path": target.path, "script_args": list(target.args[:3]),
        "threads": args.threads, "duration_per_level_s": args.duration,
        "warmup_s": args.warmup, "timeout_s": args.timeout, "machine": machine_note(),
        "processes": pids_by_name(processes), "orchestrator": orchestrator_settings(processes),
        "notes": "req/s = 200 answers / wrk's duration; percentiles are wrk's over every answer (503s included)",
    }
    sampler = StackSampler(processes, children_cpu)
    results, raw = [], {}
    for level in args.levels:
        if args.warmup:
            run_wrk(wrk_argv(wrk, url, level, args.warmup, args.threads, args.timeout, target), args.warmup)
        result, raw[str(level)] = run_level(
            sampler, wrk_argv(wrk, url, level, args.duration, args.threads, args.timeout, target), level, args.duration,
        )
        print(f"  c={level:<3} {result.rps:.1f} answered/s, p99 {result.p99_ms} ms, shed {result.shed}, "
              f"non-2xx {result.other}, errors {result.errors}, stack CPU {result.cpu.stack_s:.2f}s", flush=True)
        results.append(result)
    note["wrk_output"] = raw
    paths = write_results(args.results, args.prefix, results, note)
    print()
    print(format_load_table(results))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 1 if any(r.ok == 0 for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
