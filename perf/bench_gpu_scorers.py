"""Scorer latency at one batch of candidates: the CPU profile's ONNX Runtime against the GPU
profile's row graph on torch (FP32 and FP16).

    python -m perf.bench_gpu_scorers --device cuda [--rows 512] [--calls 200]

The models are the served architectures (pre-ranker, student ranker) at the export's default
feature sizes, with initial weights: latency does not depend on the weights, and the check needs no
export, so it fits one short call on a lent GPU. For each scorer it prints p50/p99 ms of one call
scoring `--rows` candidates: ONNX Runtime on the CPU with one user's request (the user side once,
as the CPU profile serves), and the row graph on `--device` in FP32 and in FP16 (autocast), inputs
copied in and scores copied out. `--json` writes the figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cascade.features import FeatureConfig, random_rows
from cascade.models.scorers import PreRanker, StudentRanker
from cascade.specs import USER_SIDE, prerank_spec, rank_spec, triton_scorer
from cascade.triton.torch_rows import TorchRowScorer
from export.onnx_export import export_onnx, export_row_graphs, one_user_feeds, session

MODELS = {"prerank": (PreRanker, prerank_spec), "rank": (StudentRanker, rank_spec)}


def sample_rows(cfg: FeatureConfig, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`n` candidate rows of one user (the user side repeated), ids inside the default bucket ranges."""
    rng = np.random.default_rng(seed)
    user = random_rows(cfg, 1, rng)
    items = random_rows(cfg, n, rng)
    return {k: np.repeat(user[k], n, axis=0) if k in USER_SIDE else items[k] for k in items}


def timed_ms(call, calls: int) -> tuple[float, float]:
    for _ in range(5):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def bench(device: str, rows: int, calls: int, work: Path) -> dict:
    cfg = FeatureConfig()
    feed = sample_rows(cfg, rows)
    out = {}
    for name, (model_class, spec_of) in MODELS.items():
        torch.manual_seed(0)
        model, spec = model_class(cfg).eval(), spec_of(cfg.history_len)
        export_onnx(model, spec, feed, work / f"{name}.onnx")
        _, program = export_row_graphs(model, spec, feed, work)
        _, request = one_user_feeds(feed)
        cpu = session(work / f"{name}.onnx")
        names = triton_scorer(spec).input_names
        fp32, fp16 = TorchRowScorer(program, names, device), TorchRowScorer(program, names, device, fp16=True)
        figures = {  # the scorer copies its scores back to the host: a call's time includes the device's work
            "cpu_onnxruntime_one_request": timed_ms(lambda: cpu.run(["score"], request), calls),
            f"{device}_fp32_rows": timed_ms(lambda: fp32(feed), calls),
            f"{device}_fp16_rows": timed_ms(lambda: fp16(feed), calls),
        }
        out[name] = {k: {"p50_ms": v[0], "p99_ms": v[1]} for k, v in figures.items()}
        print(f"{name} x {rows} rows: " + ", ".join(f"{k} p50 {v[0]:.3f} p99 {v[1]:.3f} ms" for k, v in figures.items()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.bench_gpu_scorers", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu_scorers: torch sees no CUDA device (use --device cpu to try it here)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as work:
        figures = bench(args.device, args.rows, args.calls, Path(work))
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "rows": args.rows, "scorers": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
