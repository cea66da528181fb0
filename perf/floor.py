"""The in-process floor: the whole funnel in one process, with no HTTP, Triton or Redis.

    python -m perf.floor --artifacts artifacts --requests 2000

Runs the serving funnel itself (`orchestrator.service.FunnelRunner` over `orchestrator.funnel.run_funnel`) on the export's artefacts, the
same funnel sizes and rerank chain as the settings give the server, with the scorers in process
(`cascade.triton.two_stage.TwoStageScorer`: the code the CPU profile's Triton models run; pre-rank
and rank in one call, as the stack makes them where Triton has the two-stage model, or two with
`--two-calls`) and exposure in
memory (`orchestrator.memory_store`). Requests go one after another for random users (a share of
them unknown: cold start), each with a fresh deadline so no stage is ever skipped, and the tool
prints the median and p99 wall time per request, the CPU time per request (the process's, all its
threads), and the median of each stage. The stack's cost per answered request is reported against
this figure (perf/README.md).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread, as the orchestrator runs (before numpy loads)

import numpy as np

from cascade.artifacts import ArtifactPaths
from cascade.settings import load_settings
from cascade.triton.batching import FeatureRequest
from cascade.triton.two_stage import TwoStageRequest, TwoStageScorer, TwoStageScores
from orchestrator.funnel import FunnelPorts
from orchestrator.memory_store import MemoryUserStore
from orchestrator.metrics import FunnelMetrics
from orchestrator.resources import Resources
from orchestrator.service import FunnelRunner
from perf.csvfmt import percentile

UNLIMITED_MS = 60_000.0  # the floor measures the work, never a skipped stage


class InProcessScorer:
    """`orchestrator.ports.Scorer` in this process: one TwoStageScorer (both scorers), one request per call."""

    def __init__(self, scorers: TwoStageScorer) -> None:
        self.scorers = scorers

    async def score(self, scorer: str, version: int, user_id: int, item_ids: np.ndarray, history: np.ndarray,
                    timestamp: int) -> np.ndarray:
        fused = self.scorers.prerank if scorer == "prerank" else self.scorers.rank
        return fused.score([FeatureRequest(user_id, item_ids, history, timestamp)])[0]

    async def score_two_stage(self, versions: Mapping[str, int], user_id: int, item_ids: np.ndarray, history: np.ndarray,
                              timestamp: int, keep: int) -> TwoStageScores:
        return self.scorers.score([TwoStageRequest(FeatureRequest(user_id, item_ids, history, timestamp), keep)])[0]


async def measure(artifacts: Path, n_requests: int, warmup: int, unknown_fraction: float, k: int, seed: int,
                  two_stage: bool = True) -> dict:
    settings = load_settings(  # a deadline no request reaches
        artifacts_dir=artifacts, request_deadline_ms=UNLIMITED_MS, two_stage=two_stage,
    )
    resources = Resources.load(settings, trending=False)  # trending: the exported list, never Redis
    paths = ArtifactPaths(artifacts)
    onnx = [paths.onnx(name).with_name(resources.manifest.served.get(name, f"{name}.onnx")) for name in ("prerank", "rank")]
    scorer = InProcessScorer(TwoStageScorer(resources.tables, *onnx))
    ports = FunnelPorts(resources.channels, scorer, MemoryUserStore(), resources, settings.prerank_keep, settings.rank_keep,
                        settings.sample_log)
    versions = resources.manifest.model_versions
    runner = FunnelRunner(settings, ports, versions, FunnelMetrics(), {(versions["prerank"], versions["rank"])})
    rng = np.random.default_rng(seed)
    n_users = resources.tables.n_users
    users = np.where(rng.random(warmup + n_requests) < unknown_fraction, n_users + rng.integers(0, 10**6, warmup + n_requests),
                     rng.integers(0, n_users, warmup + n_requests))
    wall_us, stages, scored = [], {}, 0
    cpu_started = 0.0
    for i, user in enumerate(users.tolist()):
        if i == warmup:
            cpu_started = time.process_time()
        started = time.perf_counter()
        answer = await runner.recommend(user, k, None, started)
        if i >= warmup:
            wall_us.append(int((time.perf_counter() - started) * 1e6))
            scored += answer.scored_by == "rank"
            for stage, ms in answer.latency_ms.items():
                stages.setdefault(stage, []).append(ms)
    cpu_s = time.process_time() - cpu_started
    await resources.channels.close()
    wall = sorted(wall_us)
    return {
        "requests": n_requests, "unknown_fraction": unknown_fraction, "k": k,
        "sizes": {"recalled_max": settings.recall_ann_k + settings.recall_popular_k, "prerank_keep": settings.prerank_keep,
                  "rank_keep": settings.rank_keep},
        "rerank_chain": settings.rerank_chain,
        "two_stage": two_stage,
        "wall_ms": {"p50": percentile(wall, 50) / 1e3, "p90": percentile(wall, 90) / 1e3, "p99": percentile(wall, 99) / 1e3},
        "cpu_ms_per_request": 1e3 * cpu_s / n_requests,
        "stage_ms_p50": {stage: float(np.median(v)) for stage, v in stages.items()},
        "scored_by_rank": scored / n_requests,
        "machine": {"cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.floor", description=__doc__.split("\n\n")[0])
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--requests", type=int, default=2_000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--unknown-fraction", type=float, default=0.05)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--two-calls", action="store_true", help="score as the stack does without a two-stage model")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "floor.json")
    args = p.parse_args(argv)
    if not (args.artifacts / "manifest.json").exists():
        raise SystemExit(f"{args.artifacts}/manifest.json not found: run `python -m export` first")
    if args.requests < 1 or not 0.0 <= args.unknown_fraction <= 1.0:
        raise SystemExit("--requests must be >= 1 and --unknown-fraction in [0, 1]")
    result = asyncio.run(measure(
        args.artifacts, args.requests, args.warmup, args.unknown_fraction, args.k, args.seed, not args.two_calls
    ))
    w = result["wall_ms"]
    print(f"floor: {args.requests} requests in one process: median {w['p50']:.2f} ms, p90 {w['p90']:.2f} ms, "
          f"p99 {w['p99']:.2f} ms; CPU {result['cpu_ms_per_request']:.2f} ms per request; "
          f"scored by rank {result['scored_by_rank']:.0%}")
    print("stage medians (ms): " + ", ".join(f"{s} {v:.2f}" for s, v in result["stage_ms_p50"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
