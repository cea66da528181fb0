"""`python -m export.baselines`: independent baselines for the served scorers, on the same held-out rows.

Distillation only pays if the teacher is good, so the report sets the scorers against three models
that owe nothing to them, each fitted on the training rows of the export's split and scored on the
test rows:
  popularity           the item's training positive rate, smoothed toward the global rate;
  logistic_regression  one-hot user id + item id + item category (C chosen on the validation rows);
  lightgbm             gradient-boosted trees on causal features: user fields, item category and
                       numeric, hour and weekday, and the user's and item's counts before the row
                       (`cascade.causal.as_of_rows`), early stopped on the validation rows.
Each gets AUC / GAUC / LogLoss with bootstrap 95 % intervals over users (`cascade.intervals`).
Prints a markdown table; `--out` writes the JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

from cascade.causal import NO_EVENT, as_of_rows, smoothed_rate
from cascade.features import hour_and_weekday
from cascade.intervals import METRICS, UserBootstrap
from cascade.metrics import roc_auc
from cascade.schema import USER_FIELDS, Dataset, Split
from cascade.settings import settings_or_report
from export.datasets import load_dataset, split_log

PRIOR_EVENTS = 10.0  # smoothed rates add this many pseudo-events at the global rate
C_GRID: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
CATEGORICAL: tuple[str, ...] = (*USER_FIELDS, "item_category")
CAUSAL_FEATURES: tuple[str, ...] = (
    *CATEGORICAL, "item_numeric", "hour", "weekday", "user_events", "user_positives", "user_rate",
    "item_events", "item_positives", "item_rate", "seconds_since_user_event",
)
LIGHTGBM_PARAMS: dict[str, Any] = {
    "objective": "binary", "metric": "binary_logloss", "learning_rate": 0.05, "num_leaves": 31,
    "min_data_in_leaf": 50, "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1,
    "deterministic": True, "force_row_wise": True, "verbose": -1,
    # one thread: the same trees on any machine, and no OpenMP spin-waits on shared cores (MovieLens'
    # 130 rounds took 1.7 s on one thread, 25-100 s on two of two busy cores)
    "num_threads": 1,
}
LIGHTGBM_ROUNDS, LIGHTGBM_PATIENCE = 2_000, 50


@dataclass(frozen=True)
class Fitted:
    """A baseline's probabilities on the test rows (in log order), what was chosen (in words, and its
    parameters), and the seconds it took to fit and score."""

    scores: np.ndarray
    chosen: str
    params: dict[str, Any]
    seconds: float = float("nan")


def _train_rate(dataset: Dataset, split: Split) -> float:
    return float(dataset.interactions.label[split.train].mean())


def popularity(dataset: Dataset, split: Split) -> Fitted:
    """The item's positive rate over the training rows, smoothed toward the global training rate."""
    log, prior = dataset.interactions, _train_rate(dataset, split)
    events = np.bincount(log.item[split.train], minlength=dataset.n_items)
    positives = np.bincount(log.item[split.train], weights=log.label[split.train], minlength=dataset.n_items)
    return Fitted(smoothed_rate(positives, events, prior, PRIOR_EVENTS)[log.item[split.test]], f"{PRIOR_EVENTS:g} pseudo-events",
                  {"prior_events": PRIOR_EVENTS, "prior_rate": prior})


def one_hot_ids(dataset: Dataset) -> sparse.csr_matrix:
    """Per log row: one-hot user id, item id and item category side by side (three ones a row)."""
    log = dataset.interactions
    columns = np.stack([log.user, dataset.n_users + log.item,
                        dataset.n_users + dataset.n_items + dataset.item_category[log.item]], axis=1)
    shape = (len(log), dataset.n_users + dataset.n_items + dataset.n_categories)
    return sparse.csr_matrix((np.ones(columns.size), columns.ravel(), np.arange(0, columns.size + 1, 3)), shape=shape)


def logistic_regression(dataset: Dataset, split: Split, grid: tuple[float, ...] = C_GRID) -> Fitted:
    """L2 logistic regression on `one_hot_ids`, fitted on the training rows for each C in `grid`; the C
    with the best validation AUC is kept."""
    x, y = one_hot_ids(dataset), dataset.interactions.label
    fits = [LogisticRegression(C=c, max_iter=1_000).fit(x[split.train], y[split.train]) for c in grid]
    valid_auc = [roc_auc(y[split.valid], fit.predict_proba(x[split.valid])[:, 1]) for fit in fits]
    best = int(np.nanargmax(valid_auc))
    return Fitted(fits[best].predict_proba(x[split.test])[:, 1], f"C {grid[best]:g}",
                  {"C": grid[best], "valid_auc_by_C": dict(zip(map(str, grid), valid_auc))})


def causal_features(dataset: Dataset, prior_rate: float) -> np.ndarray:
    """Per log row, the CAUSAL_FEATURES columns (float64 [rows, features]): only what was known
    strictly before the row's timestamp; seconds since the user's last event is NaN before the first.
    Rates are smoothed toward `prior_rate`, one constant for every row (the training rate), so it tells
    no row anything about its own future."""
    log = dataset.interactions
    known = as_of_rows(log)
    since = np.where(known.user_last_ts == NO_EVENT, np.nan, (log.ts - known.user_last_ts).astype(np.float64))
    columns = [
        *dataset.user_fields[log.user].T, dataset.item_category[log.item], dataset.item_numeric[log.item],
        *hour_and_weekday(log.ts),
        known.user_events, known.user_positives, smoothed_rate(known.user_positives, known.user_events, prior_rate, PRIOR_EVENTS),
        known.item_events, known.item_positives, smoothed_rate(known.item_positives, known.item_events, prior_rate, PRIOR_EVENTS),
        since,
    ]
    return np.stack([np.asarray(c, np.float64) for c in columns], axis=1)


def lightgbm_causal(dataset: Dataset, split: Split, seed: int, log_every: int = 0) -> Fitted:
    """LightGBM on `causal_features`, trained on the training rows, early stopped on the validation rows
    (LIGHTGBM_PATIENCE rounds without a better log loss); `log_every` > 0 prints the losses as it goes."""
    x, y = causal_features(dataset, _train_rate(dataset, split)), dataset.interactions.label
    train = lgb.Dataset(x[split.train], y[split.train], feature_name=list(CAUSAL_FEATURES),
                        categorical_feature=list(CATEGORICAL))
    valid = lgb.Dataset(x[split.valid], y[split.valid], reference=train)
    callbacks = [lgb.early_stopping(LIGHTGBM_PATIENCE, verbose=False)]
    if log_every:
        callbacks.append(lgb.log_evaluation(log_every))
    booster = lgb.train({**LIGHTGBM_PARAMS, "seed": seed}, train, LIGHTGBM_ROUNDS, valid_sets=[valid],
                        valid_names=["valid"], callbacks=callbacks)
    return Fitted(booster.predict(x[split.test], num_iteration=booster.best_iteration),
                  f"{booster.best_iteration} rounds", {"best_iteration": booster.best_iteration, "seed": seed, **LIGHTGBM_PARAMS})


BASELINES: dict[str, Callable[[Dataset, Split, int, bool], Fitted]] = {
    "popularity": lambda dataset, split, seed, verbose: popularity(dataset, split),
    "logistic_regression": lambda dataset, split, seed, verbose: logistic_regression(dataset, split),
    "lightgbm": lambda dataset, split, seed, verbose: lightgbm_causal(dataset, split, seed, 100 if verbose else 0),
}


def fit_baselines(dataset: Dataset, split: Split, seed: int, progress: bool = False) -> dict[str, Fitted]:
    """Every baseline's test-row probabilities, timed; `progress` shows a bar and LightGBM's losses."""
    fitted = {}
    bar = tqdm(BASELINES.items(), desc="baselines", unit="model", disable=not progress)
    for name, fit in bar:
        bar.set_postfix_str(name)
        started = time.perf_counter()
        fitted[name] = replace(fit(dataset, split, seed, progress), seconds=time.perf_counter() - started)
    return fitted


def summarise(fitted: dict[str, Fitted], dataset: Dataset, split: Split, seed: int,
              rows: np.ndarray | None = None, resamples: int = 200) -> dict[str, Any]:
    """The report's section: per baseline AUC / GAUC / LogLoss with bootstrap 95 % intervals (users
    resampled `resamples` times from `seed`) on `rows`, a subset of the test rows (log row numbers,
    e.g. the report's `held_out_rows`; default every test row), row and user counts, seconds."""
    test_rows = np.flatnonzero(split.test)
    rows = test_rows if rows is None else np.asarray(rows)
    at = np.searchsorted(test_rows, rows)
    if not np.array_equal(test_rows[np.minimum(at, len(test_rows) - 1)], rows):
        raise ValueError("rows must be test rows of the split")
    log = dataset.interactions
    bootstrap = UserBootstrap(log.user[rows], log.label[rows], resamples, seed)
    baselines = {}
    for name, fit in fitted.items():
        intervals = bootstrap.intervals(fit.scores[at])
        baselines[name] = {**{m: intervals[m].as_dict() for m in METRICS}, "fit_s": fit.seconds,
                           "chosen": fit.chosen, "params": fit.params}
    return {
        "dataset": dataset.name, "seed": seed, "resamples": resamples, "level": bootstrap.level,
        "n_rows": len(rows), "n_users": len(np.unique(log.user[rows])), "positive_rate": float(log.label[rows].mean()),
        "n_train": int(split.train.sum()), "n_valid": int(split.valid.sum()),
        "best": max(baselines, key=lambda name: baselines[name]["auc"]["point"]),
        "best_gauc": max(baselines, key=lambda name: baselines[name]["gauc"]["point"]),
        "baselines": baselines,
    }


def baseline_report(dataset: Dataset, split: Split, seed: int, rows: np.ndarray | None = None,
                    resamples: int = 200, progress: bool = False) -> dict[str, Any]:
    """`fit_baselines` then `summarise`: the baselines section of the report."""
    return summarise(fit_baselines(dataset, split, seed, progress), dataset, split, seed, rows, resamples)


def _with_interval(value: dict[str, float]) -> str:
    return f"{value['point']:.4f} [{value['low']:.4f}, {value['high']:.4f}]"


def baselines_markdown(section: dict[str, Any]) -> list[str]:
    """Markdown lines for a `baseline_report` section: one line saying on what, then the table."""
    level = round(100 * section["level"])
    lines = [
        f"{section['n_rows']:,} held-out rows of {section['n_users']:,} users (positive rate "
        f"{section['positive_rate']:.3f}), fitted on {section['n_train']:,} training rows, tuned on "
        f"{section['n_valid']:,} validation rows; {level} % intervals from {section['resamples']} bootstrap "
        f"resamples of users, seed {section['seed']}.",
        "",
        f"| baseline | AUC [{level} % CI] | GAUC [{level} % CI] | LogLoss [{level} % CI] | fit s | chosen |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in section["baselines"].items():
        lines.append(f"| {name} | " + " | ".join(_with_interval(entry[m]) for m in METRICS)
                     + f" | {entry['fit_s']:.1f} | {entry['chosen']} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.baselines", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the section as JSON here")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples of users (default 200)")
    args = parser.parse_args(argv)
    settings = settings_or_report()
    if settings is None:
        return 2
    dataset = load_dataset(settings)
    with contextlib.redirect_stdout(sys.stderr):  # LightGBM's losses go with the progress bar, not the table
        section = baseline_report(dataset, split_log(dataset.interactions, settings), settings.seed,
                                  resamples=args.resamples, progress=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(section, indent=2) + "\n")
        print(f"baselines: wrote {args.out}", file=sys.stderr)
    print("\n".join([f"## Baselines: {dataset.name}", "", *baselines_markdown(section)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
