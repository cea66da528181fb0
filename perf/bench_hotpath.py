"""Hot-path micro-benchmarks on a real export: the CPU one request spends in the orchestrator's own
numpy and ANN code (recall ANN at batch 1/4/8/16, recall merge, exposure filter, rerank chain,
sample encoding).

    python -m perf.bench_hotpath --artifacts artifacts [--calls 2000]

Each piece runs `--calls` times on inputs built from real users of the export (cycled); the table
gives the median and p99 of the process CPU time per call (per request for ANN: a batch of b
requests counts as b), in µs. CPU time rather than wall time: the machine is shared, and a
preempted call would otherwise count another process's work.
"""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread, as the orchestrator runs (before numpy loads)

import numpy as np

from cascade.artifacts import ArtifactPaths
from cascade.exposure import filter_exposed
from cascade.features import FeatureTables, assemble_requests
from cascade.recall.ann import AnnRecall, load_index
from cascade.recall.item_to_item import ItemToItemIndex, item_to_item_candidates
from cascade.recall.merge import merge_channels
from cascade.recall.popular import popular_items
from cascade.rerank.base import RerankInput, apply_chain
from cascade.rerank.registry import build_chain
from cascade.rerank.similarity import unit_rows
from cascade.samples import ServedSample, encode_sample
from cascade.settings import Settings

ANN_BATCHES = (1, 4, 8, 16)
N_USERS = 64  # distinct real users the inputs cycle through
N_EXPOSED = 100  # exposure buffer size: half of them among the candidates
RANKED, K = 50, 10  # rerank input and answer sizes


def cpu_us(call: Callable[[], object], calls: int, per_call: int = 1) -> tuple[float, float]:
    """(median, p99) process CPU µs of `call`, divided by `per_call`, after a few warm-up calls."""
    for _ in range(10):
        call()
    spent = np.empty(calls)
    for i in range(calls):
        start = time.process_time_ns()
        call()
        spent[i] = time.process_time_ns() - start
    spent /= 1e3 * per_call
    return float(np.median(spent)), float(np.percentile(spent, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--calls", type=int, default=2_000)
    args = parser.parse_args()

    settings = Settings()
    paths = ArtifactPaths(args.artifacts)
    tables = FeatureTables.load(paths.tables)
    histories = np.load(paths.user_history, allow_pickle=False)
    embeddings = np.load(paths.item_embeddings, allow_pickle=False)
    ann = AnnRecall(tables, paths.onnx("user_tower"), load_index(paths.faiss_index, use_gpu=False))
    i2i = ItemToItemIndex.load(paths.item_to_item)
    rng = np.random.default_rng(0)
    users = rng.choice(np.flatnonzero((histories >= 0).any(axis=1)), N_USERS, replace=False)
    now = int(time.time())
    stamps = np.full(N_USERS, now, np.int64)
    ann_k, i2i_quota, pop_k = settings.recall_ann_k, 200, settings.recall_popular_k  # config/recall.toml
    popular = popular_items(tables.item_positives, ann_k + pop_k)
    quotas = {"ann": ann_k, "item_to_item": i2i_quota, "popular": pop_k}

    # Per user: the channels as recall merges them, the merged candidates, the exposure buffers,
    # the rerank input (the 50 best by a random score) and the served sample.
    channels, merged, exposed, seen, rerank_inputs, samples = [], [], [], [], [], []
    unit_embeddings = unit_rows(embeddings)  # normalised once, at load
    for user in users:
        ann_ids, ann_scores = ann.search_many(np.array([user]), histories[[user]], stamps[:1], ann_k)[0]
        i2i_ids, i2i_scores = item_to_item_candidates(i2i, histories[user], 5 * i2i.neighbours.shape[1], 5, 0.8)
        found = [("ann", ann_ids, ann_scores), ("item_to_item", i2i_ids, i2i_scores), ("popular", *popular)]
        cands = merge_channels(found, limit=sum(quotas.values()), quotas=quotas)
        shown = np.concatenate([rng.choice(cands.item_ids, N_EXPOSED // 2, replace=False),
                                rng.choice(tables.n_items, N_EXPOSED // 2, replace=False)])
        top = cands.item_ids[:RANKED]
        scores = rng.random(RANKED).astype(np.float32)
        served = top[:K]
        features, _ = assemble_requests(tables, [(int(user), served, histories[user], now)])
        channels.append(found)
        merged.append(cands.item_ids)
        exposed.append(np.unique(shown))
        seen.append(np.unique(shown[::2]))
        rerank_inputs.append((top, scores, tables.item_category[top]))
        samples.append(ServedSample(
            "0" * 32, int(user), now, "rank", {"prerank": 1, "rank": 1}, "none", "none", served, scores[:K], features,
        ))
    chain = build_chain(settings.rerank_chain)
    cycle = iter(range(1 << 62))

    def user() -> int:
        return next(cycle) % N_USERS

    def ann_batch(size: int) -> Callable[[], object]:
        def call() -> object:
            rows = [user() for _ in range(size)]
            return ann.search_many(users[rows], histories[users[rows]], stamps[rows], ann_k)
        return call

    def merge() -> object:
        return merge_channels(channels[user()], sum(quotas.values()), quotas)

    def rerank() -> object:
        ids, scores, categories = rerank_inputs[user()]
        batch = RerankInput(ids, scores, categories, None, unit_embeddings=unit_embeddings[ids])
        return apply_chain(chain, batch, K)

    def exposure() -> object:
        u = user()
        return filter_exposed(merged[u], exposed[u], min_keep=K, seen=seen[u])

    rows: list[tuple[str, tuple[float, float]]] = []
    for size in ANN_BATCHES:
        per_request = cpu_us(ann_batch(size), max(args.calls // size, 50), size)
        rows.append((f"ANN recall, batch {size} (per request)", per_request))

    rows += [
        ("recall merge (ann 1000 + i2i 200 + popular 200)", cpu_us(merge, args.calls)),
        (f"exposure filter (~{len(merged[0])} candidates, {N_EXPOSED} exposed)", cpu_us(exposure, args.calls)),
        (f"rerank chain mmr + truncate ({RANKED} -> {K})", cpu_us(rerank, args.calls)),
        (f"sample encode ({K} items)", cpu_us(lambda: encode_sample(samples[user()]), args.calls)),
    ]
    print("| piece | median µs | p99 µs |\n|---|---:|---:|")
    for name, (median, p99) in rows:
        print(f"| {name} | {median:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
