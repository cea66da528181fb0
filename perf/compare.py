"""Plot closed-loop runs side by side: answered req/s against p99 per level, each point labelled with
its concurrency and its share of degraded answers, and the stack's CPU per answer by process.

    python -m perf.compare before=perf/results/load/before_wrk_run.json after=perf/results/load/after_wrk_run.json \\
        --floor perf/results/floor.json --out perf/results/load/before_after.png

Reads the JSON notes `perf.wrk` (or `perf.loadgen`) writes. A degraded answer is never a success, so
no point is drawn without its degraded share.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from perf.plot import save_figure

PROCESS_ORDER = ("orchestrator", "tritonserver", "stubs", "redis-server", "generator")


def cpu_by_process(level: dict) -> dict[str, float]:
    """CPU ms per answer of one level, the Triton stubs summed into one bar segment."""
    per = level["cpu"]["ms_per_answer"]
    out = {name: per.get(name, 0.0) for name in PROCESS_ORDER if name != "stubs"}
    out["stubs"] = sum(v for k, v in per.items() if k.startswith("stub:"))
    return out


def plot(runs: dict[str, dict], floor_ms: float | None, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), dpi=110)
    for name, run in runs.items():
        levels = [lv for lv in run["levels"] if lv.get("ok")]
        xs, ys = [lv["answered_rps"] for lv in levels], [lv["p99_ms"] for lv in levels]
        left.plot(xs, ys, marker="o", label=name)
        for lv, x, y in zip(levels, xs, ys):
            left.annotate(f"c={lv['level']}, {100 * lv['degraded_share']:.1f}% degr.", (x, y),
                          textcoords="offset points", xytext=(4, 4), fontsize=7)
    left.axhline(50, color="grey", ls="--", lw=0.8)
    left.set_xlabel("answered requests/s (HTTP 200)")
    left.set_ylabel("p99 latency (ms)")
    left.set_title("closed loop (wrk): rate vs p99, share of degraded answers", fontsize=10)
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8)

    rows = [(name, lv) for name, run in runs.items() for lv in run["levels"] if lv.get("ok")]
    labels = [f"{name}\nc={lv['level']}" for name, lv in rows]
    bottoms = np.zeros(len(rows))
    for process in PROCESS_ORDER:
        heights = np.array([cpu_by_process(lv)[process] for _, lv in rows])
        right.bar(range(len(rows)), heights, 0.8, bottom=bottoms, label=process)
        bottoms += heights
    if floor_ms is not None:
        right.axhline(floor_ms, color="black", ls="--", lw=0.8, label=f"floor median {floor_ms:.2f} ms")
        right.axhline(2 * floor_ms, color="red", ls=":", lw=0.8, label="2x floor")
    right.set_xticks(range(len(rows)), labels, fontsize=6)
    right.set_ylabel("CPU ms per answered request")
    right.set_title("CPU per answer by process", fontsize=10)
    right.legend(fontsize=7)
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="name=path/to/<prefix>_run.json")
    p.add_argument("--floor", type=Path, help="perf/results/floor.json (perf.floor)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    runs = {}
    for spec in args.runs:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).exists():
            raise SystemExit(f"expected name=path to an existing run note, got {spec!r}")
        runs[name] = json.loads(Path(path).read_text())
    floor = json.loads(args.floor.read_text())["wall_ms"]["p50"] if args.floor else None
    print(f"wrote {plot(runs, floor, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
