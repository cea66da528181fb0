"""The look-alike request's model compute, in process: how much of the 50 ms budget the models take
over 100k users (the endpoint under load: `python -m perf.wrk --endpoint lookalike`).

    python -m perf.bench_lookalike [--users 100000] [--candidates 1000] [--seeds 50] [--calls 300]

Per call: the seeds' mean direction (`cascade.lookalike.seeds.mean_query`), an IVF search over the
users' embeddings for `--candidates` candidates (faiss, one thread, nprobe 32, as the item index
runs), the RALM-style scorer (`cascade.models.lookalike.SeedAttention`, torch, one thread) over
those candidates against the seeds, and the top 100. Users are seeded random unit vectors with
random fields; the scorer has initial weights (its time does not depend on them). It prints p50
and p99 wall ms of each stage and of the whole, over `--calls` calls after 10 warm-ups.
Not measured here: Redis, HTTP, JSON and the Triton call, which the endpoint adds.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch

from cascade.lookalike.seeds import mean_query
from cascade.models.lookalike import SeedAttention
from cascade.recall.ann import single_threaded_faiss
from cascade.rerank.similarity import unit_rows
from export.faiss_index import build_index
from cascade.lookalike.users import UserSide

FIELDS, BUCKETS, K = 5, 1_009, 100
WARM_UP = 10


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m perf.bench_lookalike", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--candidates", type=int, default=1_000)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--nprobe", type=int, default=32)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    single_threaded_faiss()
    rng = np.random.default_rng(0)
    users = UserSide(unit_rows(rng.normal(size=(args.users, 32)), np.float32), rng.integers(1, BUCKETS, (args.users, FIELDS)),
                     rng.random((args.users, 1)).astype(np.float32))
    index = build_index(users.embedding, kind="ivf")
    index.nprobe = args.nprobe
    torch.manual_seed(0)
    model = SeedAttention(32, FIELDS, BUCKETS).eval()

    stages = {"query": [], "ann": [], "score": [], "top": [], "total": []}
    for call in range(WARM_UP + args.calls):
        seeds = rng.choice(args.users, args.seeds, replace=False)
        t0 = time.perf_counter()
        query = mean_query(users.embedding[seeds])
        t1 = time.perf_counter()
        _, ids = index.search(query[None], args.candidates)
        candidates = ids[0][ids[0] >= 0]
        t2 = time.perf_counter()
        with torch.inference_mode():
            scores = model(*users.tensors(seeds), *users.tensors(candidates)).numpy()
        t3 = time.perf_counter()
        top = candidates[np.argsort(-scores)[:K]]
        t4 = time.perf_counter()
        if call >= WARM_UP and len(top):
            for name, (a, b) in {"query": (t0, t1), "ann": (t1, t2), "score": (t2, t3), "top": (t3, t4), "total": (t0, t4)}.items():
                stages[name].append((b - a) * 1e3)
    print(f"look-alike compute: {args.users:,} users, {args.seeds} seeds, {args.candidates:,} candidates, top {K}, "
          f"{args.calls} calls, one thread")
    print("| stage | p50 ms | p99 ms |\n|---|---:|---:|")
    for name, spent in stages.items():
        p50, p99 = np.percentile(spent, [50, 99])
        print(f"| {name} | {p50:.3f} | {p99:.3f} |")


if __name__ == "__main__":
    main()
