"""The one CSV format every perf result uses: perf_analyzer's, reduced to the columns we compare.

`Concurrency,Inferences/Second,Client Send,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency`
(`Request Rate` in place of `Concurrency` for open-loop runs), times in integer microseconds,
rows sorted by throughput, the p-th percentile taken at index floor(p/100*(n-1)+0.5) of the
sorted latencies. Pure: no I/O beyond the text it is given or returns.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CONCURRENCY = "Concurrency"
REQUEST_RATE = "Request Rate"
PERCENTILES = (50, 90, 95, 99)
VALUE_COLUMNS = ("Inferences/Second", "Client Send", "Client Recv", *(f"p{p} latency" for p in PERCENTILES))


def header(first: str = CONCURRENCY) -> list[str]:
    if first not in (CONCURRENCY, REQUEST_RATE):
        raise ValueError(f"first column must be {CONCURRENCY!r} or {REQUEST_RATE!r}, got {first!r}")
    return [first, *VALUE_COLUMNS]


@dataclass(frozen=True)
class Row:
    load: float  # concurrency (closed loop) or request rate (open loop)
    throughput: float  # inferences per second
    client_send_us: int
    client_recv_us: int
    p50_us: int
    p90_us: int
    p95_us: int
    p99_us: int

    @property
    def percentiles(self) -> dict[int, int]:
        return {50: self.p50_us, 90: self.p90_us, 95: self.p95_us, 99: self.p99_us}


def percentile_index(p: float, n: int) -> int:
    """perf_analyzer's index of the p-th percentile among n sorted values."""
    if n <= 0:
        raise ValueError("no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} outside [0, 100]")
    return int(math.floor(p / 100 * (n - 1) + 0.5))


def percentile(sorted_values: Sequence[int], p: float) -> int:
    return sorted_values[percentile_index(p, len(sorted_values))]


def summarise(
    load: float, latencies_us: Iterable[int], elapsed_s: float, send_us: Iterable[int] = (), recv_us: Iterable[int] = ()
) -> Row:
    """One row from the latencies (µs) of the requests completed in `elapsed_s` seconds."""
    values = sorted(int(v) for v in latencies_us)
    if not values:
        raise ValueError("no completed requests to summarise")
    if elapsed_s <= 0:
        raise ValueError(f"elapsed time must be positive, got {elapsed_s}")
    send, recv = list(send_us), list(recv_us)
    mean = lambda xs: int(sum(xs) / len(xs)) if xs else 0  # noqa: E731 - perf_analyzer truncates averages
    p = {q: percentile(values, q) for q in PERCENTILES}
    return Row(load, len(values) / elapsed_s, mean(send), mean(recv), p[50], p[90], p[95], p[99])


def format_load(load: float) -> str:
    return str(int(load)) if float(load).is_integer() else f"{load:g}"


def format_throughput(x: float) -> str:
    """As C++ streams print a double by default (6 significant digits), which perf_analyzer uses."""
    return f"{x:.6g}"


def to_csv(rows: Iterable[Row], first: str = CONCURRENCY) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header(first))
    for r in sorted(rows, key=lambda r: r.throughput):
        writer.writerow([format_load(r.load), format_throughput(r.throughput), r.client_send_us, r.client_recv_us,
                         r.p50_us, r.p90_us, r.p95_us, r.p99_us])
    return out.getvalue()


def from_csv(text: str) -> list[Row]:
    """Rows of our CSV or of a full perf_analyzer CSV (extra columns ignored; stops at the first blank line)."""
    lines = []
    for line in text.splitlines():
        if not line.strip():
            break
        lines.append(line)
    reader = csv.DictReader(lines)
    fields = reader.fieldnames or []
    first = CONCURRENCY if CONCURRENCY in fields else REQUEST_RATE if REQUEST_RATE in fields else None
    missing = [c for c in VALUE_COLUMNS if c not in fields]
    if first is None or missing:
        raise ValueError(f"not a perf_analyzer CSV: header {fields}")
    return [
        Row(float(rec[first]), float(rec["Inferences/Second"]), int(rec["Client Send"]), int(rec["Client Recv"]),
            *(int(rec[f"p{p} latency"]) for p in PERCENTILES))
        for rec in reader
    ]


def format_table(results: dict[str, list[Row]], load_name: str = "concurrency") -> str:
    """A markdown table: model, load, infer/s, p50/p90/p99 µs (rows by model, then load)."""
    lines = [f"| model | {load_name} | infer/s | p50 µs | p90 µs | p99 µs |", "|---|---:|---:|---:|---:|---:|"]
    for name, rows in results.items():
        for r in sorted(rows, key=lambda r: r.load):
            lines.append(f"| {name} | {format_load(r.load)} | {r.throughput:.1f} | {r.p50_us} | {r.p90_us} | {r.p99_us} |")
    return "\n".join(lines)
