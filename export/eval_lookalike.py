"""Look-alike audiences on held-out behaviour: given the users who liked an item in training (the
seeds), find the users who will like it later.

    python -m export.eval_lookalike [--out DIR] [--tasks 300] [--no-locations] [--active-only]   # the export CASCADE_* names

A task is an item with at least `MIN_SEEDS` training positives and a later positive from a user who
had not liked it in training. Its seeds are its `MAX_SEEDS` most recent training positives; its
targets are the users who like it in a later window and had not in training; the candidates are
every user but the item's training positives, as serving searches them: who will be active later
is not known when a campaign is planned. `--active-only` keeps only the users active in the later
window, a candidate set that knows the future (the scorer then trains the same way). On MovieLens
the two differ: its later windows are mostly users who joined late (no training events: the
models know their demographics, place and that they are new), so over every user the most active
ones in training score below random; and only 166 users are active in its test window, so over
those Recall@100 takes most of them and cannot be 3x random's. Validation tasks take their targets
from the validation window, test tasks from the test window; both take their seeds from training. Each method ranks the candidates and is scored by Recall@K of the targets:

* random users (seeded);
* the most active users (training events);
* mean-pooled seeds: cosine with the seeds' mean user embedding (`cascade.lookalike.seeds`);
* soft attention over the seeds (a global and a candidate-aware part, no training), its temperatures
  and mix chosen on the validation window's tasks;
* the trained RALM-style scorer (`export.lookalike`), its epoch chosen on the validation tasks,
  exported to `<artifacts>/onnx/lookalike.eval.onnx` (beside the export's served one) and judged through ONNX Runtime, the graph a
  server would run (its parity with torch is in the result);
* the same scorer over only what serving scores (`ralm_served_pool`): the CASCADE_LOOKALIKE_POOL
  users nearest the seeds' mean direction, as the route's recall stage cuts them before Triton.

Every choice is made on the validation window's tasks; the figures are the test window's.

User embeddings are the two-tower user tower's (the export's ONNX), for each user's history at the
end of training, as serving would compute them. Intervals are bootstrap 95 % over tasks.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cascade.artifacts import ArtifactPaths
from cascade.features import FeatureTables
from cascade.intervals import percentile_interval, ratio_of_means
from cascade.lookalike.seeds import AttentionParams, attention_scores, mean_pooled_scores
from cascade.lookalike.tasks import MAX_SEEDS, MIN_SEEDS, Ranker, Task, recalls, tasks_for
from cascade.settings import Settings, settings_or_report
from cascade.specs import USER_EMBEDDING
from export.datasets import load_dataset, split_log
from export.eval_scorers import OnnxModel
from export.locations import user_locations
from export.lookalike import fit_lookalike, onnx_scores
from export.onnx_export import session

KS = (20, 100)  # Recall@K reported; the bars read K = 100
GRID = {"local_temperature": (0.05, 0.1, 0.2), "global_temperature": (0.1,), "mix": (0.0, 0.25, 0.5, 0.75)}


def rankers(embeddings: np.ndarray, activity: np.ndarray, seed: int) -> dict[str, Ranker]:
    """The untrained methods."""
    n = len(embeddings)
    return {
        "random": lambda t: np.random.default_rng([seed, t.item]).random(n),
        "most_active": lambda t: activity,
        "mean_pooled": lambda t: mean_pooled_scores(embeddings, embeddings[t.seeds]),
    }


def once_per_task(rank: Ranker) -> Ranker:
    """`rank`, each task's scores computed once: the scorer's are read by two methods (over every
    user and over the served pool), and scoring every user is the evaluation's costliest step."""
    scores: dict[int, np.ndarray] = {}

    def cached(task: Task) -> np.ndarray:
        if task.item not in scores:
            scores[task.item] = rank(task)
        return scores[task.item]
    return cached


def in_served_pool(rank: Ranker, embeddings: np.ndarray, size: int) -> Ranker:
    """`rank` over what serving scores alone: the `size` users nearest the seeds' mean direction
    (`orchestrator.lookalike`'s recall stage, exact here where serving asks the users' index), the
    task's known users left out as serving leaves out the seeds; every other user last."""
    def ranked_in_pool(task: Task) -> np.ndarray:
        near = mean_pooled_scores(embeddings, embeddings[task.seeds])
        near[task.known] = -np.inf
        pool = np.argsort(-near, kind="stable")[:size]
        out = np.full(len(embeddings), -np.inf)
        out[pool] = rank(task)[pool]
        return out
    return ranked_in_pool


def soft_attention(embeddings: np.ndarray) -> Callable[[AttentionParams], Ranker]:
    return lambda params: lambda t: attention_scores(embeddings, embeddings[t.seeds], params)


def choose_params(valid: list[Task], attention: Callable[[AttentionParams], Ranker]) -> tuple[AttentionParams, list[dict]]:
    """The grid point with the best mean Recall@K on the validation tasks."""
    tried = []
    for values in tqdm(list(itertools.product(*GRID.values())), desc="attention grid", unit="point", leave=False):
        params = AttentionParams(**dict(zip(GRID, values)))
        tried.append({**dict(zip(GRID, values)), "recall": float(np.nanmean(recalls(valid, attention(params), KS)[max(KS)]))})
    best = max(tried, key=lambda row: row["recall"])
    return AttentionParams(**{name: best[name] for name in GRID}), tried


def summary(per_task: dict[str, np.ndarray], resamples: int, seed: int) -> dict:
    """Each method's mean Recall@K over tasks with its interval, and the ratios the bars read (paired)."""
    n = len(per_task["random"])
    draws = np.random.default_rng(seed).integers(0, n, (resamples, n))
    methods = {name: percentile_interval(float(np.nanmean(v)), np.nanmean(v[draws], axis=1), 0.95).as_dict()
               for name, v in per_task.items()}
    ratios = {f"{top}/{base}": ratio_of_means(per_task[top], per_task[base], resamples, seed).as_dict()
              for top in ("ralm", "soft_attention") for base in ("mean_pooled", "random", "most_active")}
    return {"methods": methods, "ratios": ratios}


def evaluate_lookalike(settings: Settings, tasks: int = 300, resamples: int = 200, threads: int = 1,
                       locations: bool = True, train_seed: int | None = None, active_only: bool = False) -> dict:
    """`locations`: the scorer gets the users' geohash fields (`export.locations`); False for the ablation.
    `train_seed` seeds the scorer's training alone (default: settings.seed, which also seeds the data).
    `active_only`: the candidates are only the users active in the task's later window (`tasks_for`),
    for the validation tasks and the scorer's training too."""
    started = time.perf_counter()
    paths = ArtifactPaths(settings.artifacts_dir)
    tables = FeatureTables.load(paths.tables)
    dataset = load_dataset(settings)
    log, split = dataset.interactions, split_log(dataset.interactions, settings)
    if tables.n_users != dataset.n_users:
        raise RuntimeError(f"{paths.root} holds {tables.n_users} users, the data {dataset.n_users}: evaluate with the export's settings")
    tower = OnnxModel(paths.onnx("user_tower"), USER_EMBEDDING, threads)
    valid = tasks_for(log, split.train, split.valid, tasks, settings.seed, active_only)
    test = tasks_for(log, split.train, split.test, tasks, settings.seed + 1, active_only)
    graph = paths.onnx("lookalike.eval")  # the export's own lookalike.onnx is what Triton serves: left alone
    fitted = fit_lookalike(settings, log, split.train, tables, tower, np.load(paths.user_history),
                           user_locations(settings, dataset, split.train), valid, graph, locations, train_seed, active_only)
    side = fitted.table.side
    # the scorer's activity field, log(1 + training events), orders users as their event counts do
    methods, attention = rankers(side.embedding, side.activity[:, 0], settings.seed), soft_attention(side.embedding)
    params, grid = choose_params(valid, attention)
    methods["soft_attention"] = attention(params)
    served = session(graph, threads)
    methods["ralm"] = once_per_task(lambda t: onnx_scores(served, side, t.seeds))  # the exported graph, as a server runs it
    methods["ralm_served_pool"] = in_served_pool(methods["ralm"], side.embedding, settings.lookalike_pool)
    per_task = {name: recalls(test, rank, KS) for name, rank in tqdm(methods.items(), desc="look-alike methods", unit="method", leave=False)}
    by_k = {f"recall@{k}": summary({name: v[k] for name, v in per_task.items()}, resamples, settings.seed) for k in KS}
    return {
        "dataset": dataset.name, "n_users": dataset.n_users, "ks": list(KS), "min_seeds": MIN_SEEDS, "max_seeds": MAX_SEEDS,
        "n_valid_tasks": len(valid), "n_test_tasks": len(test),
        "mean_targets": float(np.mean([len(t.targets) for t in test])) if test else float("nan"),
        "mean_seeds": float(np.mean([len(t.seeds) for t in test])) if test else float("nan"),
        "mean_candidates": float(np.mean([t.audience.sum() - t.audience[t.known].sum() for t in test])) if test else float("nan"),
        "attention_params": {name: getattr(params, name) for name in GRID}, "grid": grid,
        "ralm_validation_by_epoch": fitted.validation, "locations": locations,
        "candidates": "users active in the test window" if active_only else "every user",
        "served_pool": settings.lookalike_pool,
        "train_seed": settings.seed if train_seed is None else train_seed,
        "onnx": {"file": graph.name, "parity_max_abs_diff": fitted.parity},
        **by_k, "seconds": time.perf_counter() - started,
    }


def markdown(result: dict) -> str:
    lines = [f"## Look-alike audiences ({result['dataset']}, {result['n_users']:,} users)", "",
             f"{result['n_test_tasks']} test tasks (items; {result['mean_seeds']:.1f} seeds and "
             f"{result['mean_targets']:.1f} later likers among {result['mean_candidates']:,.0f} candidates each on average; "
             f"candidates: {result.get('candidates', 'users active in the test window')}), "
             f"bootstrap 95 % over tasks. Soft attention's parameters chosen on {result['n_valid_tasks']} validation tasks: "
             f"{result['attention_params']}; the RALM scorer's validation Recall@{max(result['ks'])} by epoch: "
             + ", ".join(f"{v:.3f}" for v in result["ralm_validation_by_epoch"]) + ".", "",
             "| method | " + " | ".join(f"Recall@{k} [95 % interval]" for k in result["ks"]) + " |",
             "|---|" + "---|" * len(result["ks"])]
    first = result[f"recall@{result['ks'][0]}"]
    for name in first["methods"]:
        cells = [result[f"recall@{k}"]["methods"][name] for k in result["ks"]]
        lines.append(f"| {name} | " + " | ".join(f"{m['point']:.4f} [{m['low']:.4f}, {m['high']:.4f}]" for m in cells) + " |")
    lines += ["", "| ratio | " + " | ".join(f"@{k} [95 % interval]" for k in result["ks"]) + " |", "|---|" + "---|" * len(result["ks"])]
    for name in first["ratios"]:
        cells = [result[f"recall@{k}"]["ratios"][name] for k in result["ks"]]
        lines.append(f"| {name} | " + " | ".join(f"{r['point']:.2f}x [{r['low']:.2f}, {r['high']:.2f}]" for r in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    """Recall@K of each method with its 95 % interval, one panel per K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from perf.plot import save_figure

    fig, axes = plt.subplots(1, len(result["ks"]), figsize=(5 * len(result["ks"]), 3.6), dpi=110)
    for ax, k in zip(np.atleast_1d(axes), result["ks"]):
        methods = result[f"recall@{k}"]["methods"]
        points = np.array([m["point"] for m in methods.values()])
        errors = np.array([[m["point"] - m["low"], m["high"] - m["point"]] for m in methods.values()]).T
        ax.bar(list(methods), points, yerr=errors, capsize=4, color=["#999999"] * 3 + ["#7fa7d9", "#1f5fae", "#0b3b75"][: len(methods) - 3])
        ax.set_title(f"Recall@{k} ({result['n_test_tasks']} test tasks, 95 % intervals)")
        ax.tick_params(axis="x", labelrotation=20)
    fig.suptitle(f"Look-alike audiences: {result['dataset']}, {result['n_users']:,} users")
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.eval_lookalike", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="output folder (default: <artifacts_dir>/report)")
    parser.add_argument("--tasks", type=int, default=300, help="items per window (default 300)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--no-locations", action="store_true", help="the scorer without geohash fields (ablation)")
    parser.add_argument("--train-seed", type=int, help="seed of the scorer's training alone (default: the settings' seed)")
    parser.add_argument("--active-only", action="store_true",
                        help="only the users active in the test window are candidates (future information)")
    args = parser.parse_args(argv)
    settings = settings_or_report()
    if settings is None:
        return 2
    result = evaluate_lookalike(settings, args.tasks, threads=args.threads, locations=not args.no_locations,
                                train_seed=args.train_seed, active_only=args.active_only)
    out = args.out or ArtifactPaths(settings.artifacts_dir).root / "report"
    out.mkdir(parents=True, exist_ok=True)
    (out / "lookalike.json").write_text(json.dumps(result, indent=2))
    (out / "lookalike.md").write_text(markdown(result))
    plot(result, out / "lookalike.png")
    print(markdown(result) + f"\n-> {out / 'lookalike.md'} ({result['seconds']:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
