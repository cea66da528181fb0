"""perf_analyzer `--input-data` JSON files built from real ids of an export.

Each entry is one request: a real user with a non-empty history (from user_history.npy), N
distinct candidate items drawn from the catalogue, that user's real history (padding dropped)
and a timestamp. Pipelines and feature_assembly get the raw request tensors; a two-stage model
(`two_stage_p<P>_r<R>`) gets them with the pre-rank candidates and `keep` = the rank candidate count.
(The GPU profile's scorers batch candidate rows, not requests: they are measured through the pipelines.)

On the CPU profile every model batches requests (max_batch_size > 0), so the shapes leave out the
batch dimension, which perf_analyzer adds (`-b 1`); the GPU profile's feature_assembly and
ensembles are unbatched, so there the shapes spell out the request's batch of one (`unbatched`).

CLI: `python -m perf.input_data --artifacts DIR --out DIR [--entries 8] [--prerank-candidates 500]
[--rank-candidates 200]`.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cascade.artifacts import ArtifactPaths
from cascade.features import FeatureTables
from cascade.history import PAD_ITEM
from cascade.specs import REQUEST_INPUTS
from cascade.triton.layout import two_stage_versions

BASE_TIMESTAMP = 1_700_000_000  # 2023-11-14, inside the synthetic log's range of hours and weekdays
SECONDS_PER_WEEK = 7 * 86_400


@dataclass(frozen=True)
class Request:
    user_id: int
    item_ids: np.ndarray  # int64 [n]
    history: np.ndarray  # int64 [m], m >= 1
    timestamp: int

    def as_tuple(self) -> tuple[int, np.ndarray, np.ndarray, int]:
        return self.user_id, self.item_ids, self.history, self.timestamp


# model -> (kind of tensors, which candidate count it gets)
MODELS: dict[str, tuple[str, str]] = {
    "feature_assembly": ("request", "prerank"),
    "prerank_pipeline": ("request", "prerank"),
    "rank_pipeline": ("request", "rank"),
}


def recipe(model: str) -> tuple[str, str]:
    """(kind of tensors, which candidate count) for `model`; raises ValueError for a model without one."""
    if two_stage_versions(model) is not None:
        return "two_stage", "prerank"
    if model not in MODELS:
        raise ValueError(f"no input data recipe for model {model!r}; known: {sorted(MODELS)} and two_stage_p<P>_r<R>")
    return MODELS[model]


def sample_requests(
    user_history: np.ndarray, n_items: int, n_entries: int, n_candidates: int, seed: int = 0
) -> list[Request]:
    """`n_entries` requests of real users (those with some history first) and their real histories."""
    rng = np.random.default_rng(seed)
    lengths = (user_history != PAD_ITEM).sum(axis=1)
    with_history = np.flatnonzero(lengths > 0)
    if len(with_history) == 0:
        raise ValueError("no user has any history in user_history.npy")
    users = rng.choice(with_history, size=n_entries, replace=len(with_history) < n_entries)
    n = min(n_candidates, n_items)
    requests = []
    for user in users:
        row = user_history[user]
        ts = BASE_TIMESTAMP + int(rng.integers(0, SECONDS_PER_WEEK))
        items = rng.choice(n_items, size=n, replace=False).astype(np.int64)
        requests.append(Request(int(user), items, row[row != PAD_ITEM].astype(np.int64), ts))
    return requests


def _tensor(array: np.ndarray) -> dict:
    return {"content": array.reshape(-1).tolist(), "shape": list(array.shape)}


def request_entry(req: Request, unbatched: bool = False) -> dict:
    """The raw request; `unbatched`: with its batch of one in the shapes (an unbatched model's full shape)."""
    tensors = {
        "user_id": np.array([req.user_id], np.int64),
        "item_ids": req.item_ids,
        "history": req.history,
        "timestamp": np.array([req.timestamp], np.int64),
    }
    assert set(tensors) == {t.name for t in REQUEST_INPUTS}
    return {name: _tensor(t[None] if unbatched else t) for name, t in tensors.items()}


def entries_for(model: str, requests: list[Request], keep: int, unbatched: bool = False) -> list[dict]:
    if recipe(model)[0] == "two_stage":
        return [{**request_entry(r), "keep": _tensor(np.array([keep], np.int64))} for r in requests]
    return [request_entry(r, unbatched) for r in requests]


def write_input_data(
    artifacts: Path,
    out_dir: Path,
    models: list[str] | None = None,
    n_entries: int = 8,
    prerank_candidates: int = 500,
    rank_candidates: int = 200,
    seed: int = 0,
    unbatched: bool = False,
) -> dict[str, Path]:
    """Write `<out_dir>/<model>.json` for each model; return model -> path. `unbatched`: the GPU
    profile's models, whose shapes hold the request's batch of one."""
    paths = ArtifactPaths(artifacts)
    for p in (paths.tables, paths.user_history):
        if not p.exists():
            raise FileNotFoundError(f"{p} not found: run `python -m export` (CASCADE_ARTIFACTS_DIR={artifacts})")
    n_items = FeatureTables.load(paths.tables).n_items
    user_history = np.load(paths.user_history, allow_pickle=False)
    counts = {"prerank": prerank_candidates, "rank": rank_candidates}
    requests = {side: sample_requests(user_history, n_items, n_entries, n, seed) for side, n in counts.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for model in models or list(MODELS):
        side = recipe(model)[1]
        path = out_dir / f"{model}.json"
        path.write_text(json.dumps({"data": entries_for(model, requests[side], rank_candidates, unbatched)}))
        written[model] = path
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.input_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="export artefacts dir (tables.npz, user_history.npy)")
    parser.add_argument("--out", type=Path, required=True, help="folder for <model>.json")
    parser.add_argument("--models", nargs="*", default=None, help=f"default: {' '.join(MODELS)}")
    parser.add_argument("--entries", type=int, default=8, help="requests per file (perf_analyzer cycles through them)")
    parser.add_argument("--prerank-candidates", type=int, default=500)
    parser.add_argument("--rank-candidates", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unbatched", action="store_true", help="the GPU profile's models: the batch of one in the shapes")
    args = parser.parse_args(argv)
    written = write_input_data(args.artifacts, args.out, args.models, args.entries, args.prerank_candidates,
                               args.rank_candidates, args.seed, args.unbatched)
    for model, path in written.items():
        print(f"{model}: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
