"""Recall index latency over synthetic items: one backend's top-k search at batch 1, 16 and 64.

    python -m perf.bench_recall --backend torch-cuda                       # 1,000,000 x 32 items, k = 1,000
    python -m perf.bench_recall --backend exact-cpu --items 20000 --calls 200

Backends: `torch-cuda` / `torch-cpu` (`cascade.recall.gpu.TorchExactInnerProduct` on that device),
`exact-cpu` (`cascade.recall.exact.ExactInnerProduct`, the CPU serving path for a flat index) and
`faiss-cpu` (faiss single-threaded, as the recall pool runs it; `--kind flat|ivf|hnsw`, IVF probing
`--nprobe` lists). Items and queries are seeded normal vectors scaled to unit length.

It prints one header line (backend, items, dim, k, device) and a markdown table with one row per
batch size: p50 and p99 wall milliseconds per `search` call (host queries in, host answers out, so a
CUDA call includes its copies and synchronisation), the same per query (a call's time divided by
its batch size), and queries per second. Each batch size runs `--calls` calls after 10 warm-ups;
lower `--calls` for the CPU backends at 1M items (a CPU call at batch 64 takes about a second).
`--overlap Q` adds the mean top-k overlap with an exact search over the first Q queries: what an
approximate index (IVF, HNSW) gives up for its speed.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread, as the orchestrator runs (before numpy loads)

import numpy as np

BACKENDS = ("torch-cuda", "torch-cpu", "faiss-cpu", "exact-cpu")
BATCHES = (1, 16, 64)
WARM_UP = 10


def unit_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_index(backend: str, items: np.ndarray, kind: str, nprobe: int):  # -> an object with faiss's `search`
    if backend.startswith("torch-"):
        from cascade.recall.gpu import TorchExactInnerProduct

        return TorchExactInnerProduct(items, backend.removeprefix("torch-"))
    if backend == "exact-cpu":
        from cascade.recall.exact import ExactInnerProduct

        return ExactInnerProduct(items)
    from cascade.recall.ann import single_threaded_faiss
    from export.faiss_index import build_index

    single_threaded_faiss()
    index = build_index(items, kind=kind)
    if kind == "ivf":
        index.nprobe = nprobe
    return index


def device_name(backend: str) -> str:
    if backend != "torch-cuda":
        return "cpu"
    import torch

    return torch.cuda.get_device_name()


def call_ms(index, queries: np.ndarray, batch: int, k: int, calls: int) -> np.ndarray:
    """Wall ms of each of `calls` searches of `batch` queries (cycling through `queries`), after warm-ups."""
    starts = np.arange(WARM_UP + calls) * batch % (len(queries) - batch + 1)
    spent = np.empty(calls)
    for i, lo in enumerate(starts):
        begin = time.perf_counter_ns()
        index.search(queries[lo : lo + batch], k)
        if i >= WARM_UP:
            spent[i - WARM_UP] = (time.perf_counter_ns() - begin) / 1e6
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=BACKENDS, required=True)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--queries", type=int, default=1_024, help="distinct queries the calls cycle through")
    parser.add_argument("--k", type=int, default=1_000)
    parser.add_argument("--calls", type=int, default=500, help="timed calls per batch size")
    parser.add_argument("--kind", choices=("flat", "ivf", "hnsw"), default="flat", help="faiss-cpu's index")
    parser.add_argument("--nprobe", type=int, default=32, help="faiss-cpu IVF lists probed (the orchestrator's default)")
    parser.add_argument("--overlap", type=int, default=0, metavar="Q",
                        help="also print the mean top-k overlap with an exact search over the first Q queries")
    args = parser.parse_args()
    if args.queries < max(BATCHES):
        parser.error(f"--queries must be at least {max(BATCHES)}")

    rng = np.random.default_rng(0)
    items = unit_vectors(args.items, args.dim, rng)
    index = make_index(args.backend, items, args.kind, args.nprobe)
    queries = unit_vectors(args.queries, args.dim, rng)
    kind = f" ({args.kind})" if args.backend == "faiss-cpu" else ""
    print(f"{args.backend}{kind}: {args.items:,} items x {args.dim}, k = {args.k:,}, {args.calls} calls a batch size,"
          f" device {device_name(args.backend)}")
    print("| batch | p50 ms/call | p99 ms/call | p50 ms/query | p99 ms/query | queries/s |\n|---:|---:|---:|---:|---:|---:|")
    for batch in BATCHES:
        spent = call_ms(index, queries, batch, args.k, args.calls)
        p50, p99 = np.percentile(spent, [50, 99])
        print(f"| {batch} | {p50:.3f} | {p99:.3f} | {p50 / batch:.4f} | {p99 / batch:.4f} | {batch * 1e3 * len(spent) / spent.sum():,.0f} |")
    if args.overlap:
        from cascade.recall.exact import ExactInnerProduct

        sample = queries[: args.overlap]
        _, got = index.search(sample, args.k)
        _, exact = ExactInnerProduct(items).search(sample, args.k)
        shared = np.mean([len(set(a.tolist()) & set(b.tolist())) / args.k for a, b in zip(got, exact)])
        print(f"top-{args.k} overlap with the exact search over {len(sample)} queries: {shared:.4f}")


if __name__ == "__main__":
    main()
