"""The exported scorers, run through ONNX Runtime exactly as served, and their quality on held-out rows.

Every variant the export may write is looked for: `<model><suffix>.onnx` for model in teacher / rank /
prerank and suffix in '' (fp32), .int8, .int8dyn, .fp16. Each session's own input names decide which
assembled tensors it is fed, cast to the dtypes it declares.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from tqdm import tqdm

from cascade.artifacts import ArtifactPaths
from cascade.heads import HEAD_WEIGHTS, normalised, overrides_from_env
from cascade.metrics import gauc, kendall_tau, log_loss, roc_auc
from cascade.features import as_rows
from cascade.specs import SCORE
from export.onnx_export import session
from export.train import RowFeatures

SCORERS = ("teacher", "rank", "prerank")
PRECISIONS = {"fp32": "", "int8": ".int8", "int8dyn": ".int8dyn", "fp16": ".fp16"}
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


class OnnxModel:
    """One ONNX Runtime session; called with a dict holding (at least) every input it declares.
    `initializers` override the graph's; by default those a serving process would override
    (CASCADE_RANK_HEAD_WEIGHTS, `cascade.heads`), so the scores are the served ones."""

    def __init__(self, path: Path, output: str = SCORE.name, threads: int = 1,
                 initializers: dict[str, np.ndarray] | None = None) -> None:
        self.path, self.output = path, output
        self.session = session(path, threads, overrides_from_env() if initializers is None else initializers)
        self.inputs = {i.name: _ORT_DTYPES[i.type] for i in self.session.get_inputs()}

    def __call__(self, features: dict[str, np.ndarray], batch: int = 8192) -> np.ndarray:
        """Scores of row tensors (every row its own user side), `batch` rows per call."""
        n = len(features[next(iter(self.inputs))])
        out = []
        for lo in range(0, n, batch):
            feed = as_rows({name: t[lo : lo + batch] for name, t in features.items()}, list(self.inputs))
            out.append(self.session.run([self.output], {n: feed[n].astype(d, copy=False) for n, d in self.inputs.items()})[0])
        return np.concatenate(out).astype(np.float32) if out else np.empty(0, np.float32)


@dataclass(frozen=True)
class Variant:
    model: str  # teacher | rank | prerank
    precision: str  # a key of PRECISIONS
    path: Path

    @property
    def name(self) -> str:
        return self.model + PRECISIONS[self.precision]


def find_variants(paths: ArtifactPaths) -> tuple[list[Variant], list[Variant]]:
    """(present, missing) scorer variants, in SCORERS x PRECISIONS order."""
    every = [Variant(m, p, paths.onnx(m + suffix)) for m in SCORERS for p, suffix in PRECISIONS.items()]
    return [v for v in every if v.path.exists()], [v for v in every if not v.path.exists()]


def held_out_rows(test_mask: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Held-out row numbers, a seeded random `cap` of them (in log order) when there are more."""
    rows = np.flatnonzero(test_mask)
    if len(rows) > cap:
        rows = np.sort(np.random.default_rng(seed).choice(rows, cap, replace=False))
    return rows


def score_rows(
    models: dict[str, OnnxModel], features: RowFeatures, rows: np.ndarray, batch: int
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every model's scores on `rows` (features assembled once per batch) and seconds spent in each."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in models}
    seconds = dict.fromkeys(models, 0.0)
    for lo in tqdm(range(0, len(rows), batch), desc="held-out rows", unit="batch", mininterval=1.0):
        assembled = {k: v.numpy() for k, v in features(rows[lo : lo + batch]).items()}
        for name, model in models.items():
            start = time.perf_counter()
            parts[name].append(model(assembled, batch))
            seconds[name] += time.perf_counter() - start
    return {name: np.concatenate(p) if p else np.empty(0, np.float32) for name, p in parts.items()}, seconds


# The rank graph with its head weights set to one head alone (`cascade.heads`): each head's own scores.
HEAD_ONLY = {"rank: click head": (1.0, 0.0), "rank: second head": (0.0, 1.0)}


def head_models(paths: ArtifactPaths, threads: int) -> dict[str, OnnxModel]:
    """The served rank graph once per head, its weights overridden to that head alone."""
    return {name: OnnxModel(paths.onnx("rank"), threads=threads, initializers={HEAD_WEIGHTS: normalised(w)})
            for name, w in HEAD_ONLY.items()}


def served_head_weights(path: Path) -> list[float] | None:
    """The normalised (click, second) weights the rank graph at `path` serves: a serving process's
    override (CASCADE_RANK_HEAD_WEIGHTS), else the initializer the export baked in (None: a graph without heads)."""
    overridden = overrides_from_env()
    if overridden:
        return overridden[HEAD_WEIGHTS].tolist()
    baked = [i for i in onnx.load(str(path)).graph.initializer if i.name == HEAD_WEIGHTS]
    return numpy_helper.to_array(baked[0]).tolist() if baked else None


def head_metrics(scores: dict[str, np.ndarray], labels: np.ndarray, second_labels: np.ndarray, users: np.ndarray) -> dict[str, dict]:
    """AUC and GAUC of each head and of the served mix (`rank`) against both labels."""
    out = {}
    for name in (*HEAD_ONLY, "rank"):
        s = scores[name]
        out[name] = {"auc": roc_auc(labels, s), "gauc": gauc(users, labels, s),
                     "second_auc": roc_auc(second_labels, s), "second_gauc": gauc(users, second_labels, s)}
    return out


def scorer_metrics(
    variants: list[Variant],
    scores: dict[str, np.ndarray],
    seconds: dict[str, float],
    labels: np.ndarray,
    users: np.ndarray,
    tau_rows: int,
) -> dict[str, dict]:
    """AUC, GAUC, log loss and agreement (Kendall tau-b on the first `tau_rows` rows) per variant."""
    out = {}
    for v in variants:
        s = scores[v.name]
        m = {
            "file": v.path.name, "model": v.model, "precision": v.precision,
            "auc": roc_auc(labels, s), "gauc": gauc(users, labels, s), "logloss": log_loss(labels, s),
            "mean_score": float(s.mean()) if len(s) else float("nan"),
            "rows_per_s": len(s) / seconds[v.name] if seconds[v.name] > 0 else float("nan"),
        }
        if v.precision != "fp32" and v.model in scores:
            m["max_abs_diff_vs_fp32"] = float(np.max(np.abs(s - scores[v.model]))) if len(s) else 0.0
            m["kendall_tau_vs_fp32"] = kendall_tau(s[:tau_rows], scores[v.model][:tau_rows])
        if v.model != "teacher" and v.precision == "fp32" and "teacher" in scores:
            m["kendall_tau_vs_teacher"] = kendall_tau(s[:tau_rows], scores["teacher"][:tau_rows])
        out[v.name] = m
    return out
