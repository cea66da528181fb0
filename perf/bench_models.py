"""Latency of every exported scorer, per precision and batch size, on ONNX Runtime's CPU EP.

    python -m perf.bench_models --artifacts artifacts [--batches 1,64,512] [--seconds 1.5] [--shapes rows,request]

For each `<artifacts>/onnx/<model><suffix>.onnx` present (model in teacher/rank/prerank, suffix
'' fp32, .int8, .int8dyn, .fp16: the variants export/quantize.py writes), one session with ONE
intra-op thread (and one inter-op thread), fed real feature rows: the first `batch` rows of the
calibration set (`<artifacts>/calibration.npz`), or, when there is none, rows rebuilt from the
export's dataset (CASCADE_* settings, checked against the manifest). Each cell warms up, then
times back-to-back calls for `--seconds` (at least MIN_REPEATS calls), the precisions of one model
taking turns (see time_cells). p50/p99 use perf_analyzer's percentile index; items_per_s =
batch * calls / time spent in the calls.

Two batch shapes: `rows`, `batch` rows of as many users (offline scoring of a log), and `request`,
one user's request with `batch` candidates (its user side repeated on every row, as serving sends
it). The scorers embed each distinct history once, so `request` is the cheaper of the two.

Writes `<artifacts>/report/latency.json` (a list of {model, precision, shape, batch, p50_ms, p99_ms,
items_per_s, intra_op_threads}), `latency.png` (items/s, log scale, grouped by batch) and
`model_cost.json` ({model: {params, embedding_params, flops_per_item}} of each fp32 graph,
perf/model_cost.py), and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from cascade.artifacts import ArtifactPaths
from cascade.features import as_rows
from cascade.settings import load_settings
from cascade.specs import USER_ROW, USER_SIDE
from export.calibrate import (
    calibration_from_settings,
    load_calibration_set,
)
from export.eval_scorers import PRECISIONS, SCORERS
from export.model_cost import onnx_cost
from export.onnx_export import session
from perf.csvfmt import percentile
from perf.plot import save_figure

THREADS = 1
WARMUP_S = 0.2
SLICE_S = 0.05
MIN_REPEATS = 20


def feature_rows(artifacts: Path, rows: int) -> tuple[dict[str, np.ndarray], str]:
    """Real feature rows and where they came from."""
    path = ArtifactPaths(artifacts).calibration
    if path.exists():
        return load_calibration_set(path), str(path)
    features = calibration_from_settings(load_settings(artifacts_dir=artifacts), n=rows)
    return features, f"{rows} training rows rebuilt from the export's dataset"


def variants(onnx_dir: Path) -> list[tuple[str, str, Path]]:
    """(model, precision, path) of every scorer file present."""
    every = [(m, p, onnx_dir / f"{m}{suffix}.onnx") for m in SCORERS for p, suffix in PRECISIONS.items()]
    return [v for v in every if v[2].exists()]


def batch_of(features: dict[str, np.ndarray], batch: int, shape: str) -> dict[str, np.ndarray]:
    """`batch` candidates as a scorer's input: distinct rows, each its own user (`rows`), or the
    first row's user, its user side once, with `batch` candidates (`request`)."""
    take = np.arange(batch) % len(next(iter(features.values())))  # wraps only if the set is smaller than a batch
    if shape == "request":
        return {**{n: t[:1] if n in USER_SIDE else t[take] for n, t in features.items()}, USER_ROW.name: np.zeros(batch, np.int64)}
    return as_rows({n: t[take] for n, t in features.items()})


def time_cells(paths: dict[str, Path], features: dict[str, np.ndarray], batch: int, seconds: float) -> dict[str, dict[str, float]]:
    """Latency of each precision of one model on one batch of `features`.

    The precisions take turns in SLICE_S slices until each has run `seconds` (and MIN_REPEATS
    calls), so a change in machine load while the cell runs lands on all of them alike and their
    ratio stays fair (on a shared box the fp32 rank's p50 at 512 rows ranged 3.8-8.7 ms run to run)."""
    sessions = {p: session(path, THREADS) for p, path in paths.items()}
    feeds = {p: {i.name: features[i.name] for i in s.get_inputs()} for p, s in sessions.items()}
    latencies: dict[str, list[float]] = {p: [] for p in sessions}
    for p, s in sessions.items():
        _run_for(s, feeds[p], WARMUP_S, [])
    while any(sum(v) < seconds or len(v) < MIN_REPEATS for v in latencies.values()):
        for p, s in sessions.items():
            _run_for(s, feeds[p], SLICE_S, latencies[p])
    return {p: _summary(sorted(v), batch) for p, v in latencies.items()}


def _run_for(s: ort.InferenceSession, feed: dict[str, np.ndarray], seconds: float, into: list[float]) -> None:
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        s.run(None, feed)
        into.append(time.perf_counter() - t)


def _summary(latencies: list[float], batch: int) -> dict[str, float]:
    return {
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "items_per_s": batch * len(latencies) / sum(latencies),
    }


def bench(artifacts: Path, batches: list[int], seconds: float, shapes: list[str]) -> tuple[list[dict], str]:
    features, source = feature_rows(artifacts, max(batches))
    by_model: dict[str, dict[str, Path]] = {}
    for model, precision, path in variants(artifacts / "onnx"):
        by_model.setdefault(model, {})[precision] = path
    rows = []
    for model, paths in by_model.items():
        for shape in shapes:
            for batch in batches:
                cells = time_cells(paths, batch_of(features, batch, shape), batch, seconds)
                rows += [{"model": model, "precision": p, "shape": shape, "batch": batch, **c, "intra_op_threads": THREADS}
                         for p, c in cells.items()]
                print(f"  {model} {shape} batch {batch}: " + ", ".join(f"{p} {c['p50_ms']:.3f} ms" for p, c in cells.items()),
                      file=sys.stderr)
    return rows, source


def format_table(rows: list[dict]) -> str:
    fp32 = {(r["model"], r["shape"], r["batch"]): r["items_per_s"] for r in rows if r["precision"] == "fp32"}
    lines = [f"{'model':8s} {'precision':9s} {'shape':8s} {'batch':>5s} {'p50 ms':>9s} {'p99 ms':>9s} {'items/s':>11s} {'vs fp32':>7s}"]
    for r in rows:
        base = fp32.get((r["model"], r["shape"], r["batch"]))
        ratio = f"{r['items_per_s'] / base:.2f}x" if base else "-"
        lines.append(f"{r['model']:8s} {r['precision']:9s} {r['shape']:8s} {r['batch']:5d} {r['p50_ms']:9.3f} {r['p99_ms']:9.3f} "
                     f"{r['items_per_s']:11,.0f} {ratio:>7s}")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({(r["shape"], r["batch"]) for r in rows})
    series = list(dict.fromkeys((r["model"], r["precision"]) for r in rows))
    value = {(r["model"], r["precision"], (r["shape"], r["batch"])): r["items_per_s"] for r in rows}
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    for k, (model, precision) in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(batches))]
        ax.bar(xs, [value.get((model, precision, b), 0) for b in batches], width, label=f"{model} {precision}")
    ax.set_xticks(range(len(batches)), [f"{shape} {b}" for shape, b in batches])
    ax.set_yscale("log")
    ax.set_ylabel("items / s (log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--batches", default="1,64,512", help="comma-separated batch sizes")
    parser.add_argument("--seconds", type=float, default=1.5, help="timed seconds per (model, precision, batch) cell")
    parser.add_argument("--shapes", default="rows,request", help="rows (one user per row) and/or request (one user's candidates)")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if not variants(args.artifacts / "onnx"):
        print(f"no teacher/rank/prerank ONNX under {args.artifacts / 'onnx'}", file=sys.stderr)
        return 1
    shapes = [x for x in args.shapes.split(",") if x]
    if not set(shapes) <= {"rows", "request"}:
        print(f"--shapes takes rows and/or request, got {args.shapes!r}", file=sys.stderr)
        return 2
    rows, source = bench(args.artifacts, batches, args.seconds, shapes)
    out = args.artifacts / "report"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency.json").write_text(json.dumps(rows, indent=2) + "\n")
    costs = {m: onnx_cost(p) for m, precision, p in variants(args.artifacts / "onnx") if precision == "fp32"}
    (out / "model_cost.json").write_text(json.dumps(costs, indent=2, sort_keys=True) + "\n")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    header = f"ONNX Runtime CPU EP, intra_op_threads={THREADS}, {os.cpu_count()} CPUs, load average {load}; inputs: {source}"
    plot(rows, out / "latency.png", f"items/s per scorer and precision ({header.split(';')[0]})")
    print(header)
    print(format_table(rows))
    print("\nFLOPs per item (2 x MACs of MatMul/Gemm/Einsum) and params of the fp32 graphs:")
    for model, c in costs.items():
        print(f"  {model:8s} {c['flops_per_item']:>12,d} FLOPs/item  {c['params']:>11,d} params ({c['embedding_params']:,d} in embedding tables)")
    print(f"wrote {out / 'latency.json'}, {out / 'latency.png'}, {out / 'model_cost.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
