"""`python -m export.evaluate`: score what the export wrote, through ONNX Runtime, on the held-out split.

The dataset is rebuilt and split exactly as the export did (`load_dataset`, `split_log`), features
come from the training code (`RowFeatures`) and the serving code (`assemble_requests`), so the
numbers are those of the files Triton serves. Three parts:
  scorers    AUC / GAUC / LogLoss of every teacher/rank/prerank variant on held-out rows;
  retrieval  ANN (user tower + FAISS) vs most popular: Recall@K, NDCG@10 on held-out users;
  channels   the served recall channels alone and merged, on the same users (on synthetic data,
             beside the oracle list of the generator's own probabilities);
  funnel     recall -> prerank -> rank top 10 vs exhaustive teacher top 10.
Writes report.json, report.md and plots into <artifacts_dir>/report (or --out).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cascade.artifacts import ArtifactPaths
from cascade.features import FeatureTables
from cascade.recall.ann import load_index
from cascade.intervals import UserBootstrap
from cascade.schema import Dataset, Interactions, Split
from cascade.settings import Settings, settings_or_report
from cascade.specs import USER_EMBEDDING
from export.bars import LATENCY_FILE, LEADS, judge, model_costs, read_latency
from export.baselines import Fitted, fit_baselines, summarise
from export.datasets import load_dataset, split_log
from export.eval_channels import MULTI_CHANNEL_BUDGET, evaluate_channels
from export.eval_funnel import FunnelModels, evaluate_funnel
from export.eval_oracle import hidden_model, oracle_lists
from export.eval_retrieval import (
    RECALL_KS,
    ann_lists,
    held_out_users,
    list_metrics,
    popular_lists,
    sample_users,
)
from export.eval_scorers import (
    OnnxModel,
    find_variants,
    head_metrics,
    head_models,
    held_out_rows,
    score_rows,
    scorer_metrics,
    served_head_weights,
)
from export.report import write_report
from export.seeds import SEEDS_FILE, read_seeds
from export.train import RowFeatures

SMALL_CATALOGUE = 5_000  # funnel users default to 200 up to this many items, 100 above


class ArtifactMismatch(RuntimeError):
    pass


@dataclass(frozen=True)
class EvalOptions:
    out_dir: Path | None = None  # None: <artifacts_dir>/report
    retrieval_users: int = 1_000
    funnel_users: int | None = None  # None: 200 on catalogues of <= SMALL_CATALOGUE items, else 100
    max_rows: int = 200_000
    batch: int = 8_192
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    tau_rows: int = 2_000
    resamples: int = 200  # bootstrap resamples of users for the 95 % intervals


@dataclass(frozen=True)
class Evaluation:
    report: dict
    rows: np.ndarray  # the held-out log rows the scorers were evaluated on
    scores: dict[str, np.ndarray]  # variant name -> its scores on `rows`
    out_dir: Path


def _require_files(paths: ArtifactPaths) -> None:
    required = [paths.tables, paths.user_history, paths.faiss_index, *(paths.onnx(n) for n in ("user_tower", "rank", "prerank"))]
    missing = [str(p) for p in required if not p.exists()]
    if missing:
        raise FileNotFoundError(f"missing {', '.join(missing)}: run `python -m export` first")


def _check_same_data(paths: ArtifactPaths, tables: FeatureTables, dataset: Dataset, train_mask: np.ndarray) -> None:
    """The rebuilt data must be the data the export trained on (same settings, same seed)."""
    log = dataset.interactions
    positives = np.bincount(log.item[train_mask], weights=log.label[train_mask], minlength=dataset.n_items)
    if (tables.n_users, tables.n_items) != (dataset.n_users, dataset.n_items) or not np.array_equal(positives, tables.item_positives):
        raise ArtifactMismatch(
            f"{paths.root} was exported from other data than {dataset.name!r} with these settings "
            f"({tables.n_users} users / {tables.n_items} items there, {dataset.n_users} / {dataset.n_items} here, or other "
            "training positives): evaluate with the settings the export ran with"
        )


def scorer_intervals(
    scores: dict[str, np.ndarray], fitted: dict[str, Fitted], baselines: dict, log: Interactions, rows: np.ndarray,
    split: Split, seed: int, resamples: int,
) -> dict[str, dict]:
    """Bootstrap 95 % intervals (users resampled) of each scorer variant's AUC / GAUC / LogLoss on `rows`,
    and of the teacher's lead over the best baseline by AUC and over the best by GAUC (`LEADS`), on the
    same resamples (paired)."""
    boot = UserBootstrap(log.user[rows], log.label[rows], resamples, seed)
    out = {name: {m: i.as_dict() for m, i in boot.intervals(s).items()} for name, s in scores.items()}
    position = np.searchsorted(np.flatnonzero(split.test), rows)  # the baselines score every test row
    for key, pick in LEADS.items():
        best = baselines.get(pick)
        if "teacher" in scores and best in fitted:
            lead = boot.difference(scores["teacher"], fitted[best].scores[position])
            out[key] = {"baseline": best, **{m: i.as_dict() for m, i in lead.items()}}
    return out


def evaluate(settings: Settings, options: EvalOptions | None = None) -> Evaluation:
    options = options or EvalOptions()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    paths = ArtifactPaths(settings.artifacts_dir)
    out_dir = options.out_dir or paths.root / "report"
    _require_files(paths)
    tables = FeatureTables.load(paths.tables)
    dataset = load_dataset(settings)
    log = dataset.interactions
    split = split_log(log, settings)
    train_mask, test_mask = split.train, split.test
    _check_same_data(paths, tables, dataset, train_mask)
    histories = np.load(paths.user_history, allow_pickle=False)
    timings["data"] = time.perf_counter() - started

    t = time.perf_counter()
    present, absent = find_variants(paths)
    models = {v.name: OnnxModel(v.path, threads=options.threads) for v in present}
    rows = held_out_rows(test_mask, options.max_rows, settings.seed)
    heads = head_models(paths, options.threads)
    scores, seconds = score_rows({**models, **heads}, RowFeatures(tables, log), rows, options.batch)
    head_scores = {name: scores.pop(name) for name in heads} | {"rank": scores["rank"]}
    scorers = {
        "n_rows": len(rows), "n_users": len(np.unique(log.user[rows])), "positive_rate": float(log.label[rows].mean()),
        "tau_rows": min(options.tau_rows, len(rows)), "not_present": [v.name for v in absent],
        "variants": scorer_metrics(present, scores, seconds, log.label[rows], log.user[rows], options.tau_rows),
        "heads": head_metrics(head_scores, log.label[rows], log.second_label[rows], log.user[rows]),
        "head_weights": served_head_weights(paths.onnx("rank")), "second_positive_rate": float(log.second_label[rows].mean()),
    }
    timings["scorers"] = time.perf_counter() - t

    t = time.perf_counter()
    fitted = fit_baselines(dataset, split, settings.seed)
    baselines = summarise(fitted, dataset, split, settings.seed, rows, options.resamples)
    scorers["intervals"] = scorer_intervals(scores, fitted, baselines, log, rows, split, settings.seed,
                                            options.resamples)
    timings["baselines"] = time.perf_counter() - t

    t = time.perf_counter()
    held = sample_users(held_out_users(log, train_mask, dataset.n_users), options.retrieval_users, settings.seed)
    depth = max(max(RECALL_KS), settings.recall_ann_k + settings.recall_popular_k)
    tower = OnnxModel(paths.onnx("user_tower"), USER_EMBEDDING, options.threads)
    ann = ann_lists(tower, load_index(paths.faiss_index), tables, histories, held, depth)
    popular = popular_lists(tables.item_positives, held, depth)
    retrieval = {"n_users": len(held), "ks": list(RECALL_KS),
                 "ann": list_metrics(ann, held.relevant), "popular": list_metrics(popular, held.relevant)}
    timings["retrieval"] = time.perf_counter() - t

    t = time.perf_counter()
    oracle = (oracle_lists(hidden_model(settings, log), log, train_mask, held, MULTI_CHANNEL_BUDGET)
              if dataset.name == "synthetic" else None)
    channels = evaluate_channels(settings, held, options.resamples, settings.seed, oracle)
    timings["channels"] = time.perf_counter() - t

    t = time.perf_counter()
    n_funnel = min(options.funnel_users or (200 if dataset.n_items <= SMALL_CATALOGUE else 100), len(held))
    exhaustive = "teacher" if "teacher" in models else "rank"
    funnel_models = FunnelModels(models["prerank"], models["rank"], models[exhaustive], exhaustive)
    funnel = evaluate_funnel(funnel_models, held.take(np.arange(n_funnel)), settings, options.resamples)
    timings["funnel"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started

    manifest = json.loads(paths.manifest.read_text()) if paths.manifest.exists() else None
    report = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "artifacts_dir": str(paths.root),
        "dataset": {
            "name": dataset.name, "n_users": dataset.n_users, "n_items": dataset.n_items,
            "n_categories": dataset.n_categories, "n_interactions": len(log),
            "n_train": int(train_mask.sum()), "n_held_out": int(test_mask.sum()),
            "held_out_positive_rate": float(log.label[test_mask].mean()) if test_mask.any() else float("nan"),
        },
        "settings": settings.model_dump(mode="json"),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "manifest": manifest,
        "scorers": scorers,
        "baselines": baselines,
        "retrieval": retrieval,
        "channels": channels,
        "funnel": funnel,
        "latency": read_latency(paths.root / "report" / LATENCY_FILE),
        "seeds": read_seeds(paths.root / "report" / SEEDS_FILE),
        "model_costs": model_costs(manifest),
        "timings_s": timings,
    }
    report["bars"] = judge(report)
    write_report(report, out_dir)
    return Evaluation(report, rows, scores, out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="output folder (default: <artifacts_dir>/report)")
    parser.add_argument("--users", type=int, default=1_000, help="held-out users for retrieval (default 1000)")
    parser.add_argument("--funnel-users", type=int, help="users for funnel vs exhaustive (default 200 up to 5k items, else 100)")
    parser.add_argument("--max-rows", type=int, default=200_000, help="held-out rows scored (default 200000)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime intra-op threads")
    args = parser.parse_args(argv)
    settings = settings_or_report()
    if settings is None:
        return 2
    options = EvalOptions(args.out, args.users, args.funnel_users, args.max_rows, threads=args.threads)
    evaluation = evaluate(settings, options)
    for bar in evaluation.report["bars"]:
        status = {True: "met", False: "NOT MET", None: "n/a"}[bar["met"]]
        print(f"[{status:>7}] {bar['bar']}: {bar['figure']}")
    print(f"report: {evaluation.out_dir / 'report.md'} ({evaluation.report['timings_s']['total']:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
