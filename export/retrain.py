"""`python -m export.retrain --samples samples.parquet [--activate]`: a rank version learnt from served traffic.

1. Warm start: the weights of the rank version being served (the orchestrator's active one; with no
   orchestrator answering, the newest version whose weights the artifacts hold; `--from-version`).
2. Train on the logged samples (`python -m orchestrator.export_samples`): the exact tensors the
   scorer read when it served them, the click head on `label` (a click, or a long dwell), the second
   head on `second_label` (a long dwell, `cascade.heads`).
3. Evaluate on the latest slice of the log (`--eval-fraction` of the answers, in time order, none of
   them trained on): the AUC of the served version's scores (its ONNX from the repository, re-scoring
   the logged tensors as Triton did) against the retrained model's, with a 95 % interval of the
   difference from a bootstrap over users.
4. Publish (`export.publish`: checked, written as the next version, old unused versions pruned) only if
   the retrained model wins by at least `--min-gain` AUC and the interval's low end is above 0;
   `--activate` then moves the orchestrator's traffic to it. Its weights are kept beside the
   artifacts (`ArtifactPaths.weights`), so the next retraining warm-starts from it.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from cascade.artifacts import ArtifactPaths
from cascade.features import FeatureTables
from cascade.intervals import Interval, UserBootstrap
from cascade.metrics import roc_auc
from cascade.models.scorers import StudentRanker, head_loss
from cascade.samples import features_of_rows
from cascade.settings import Settings, SettingsError, load_settings
from cascade.specs import RANK_FEATURES, rank_spec
from cascade.triton.layout import ONNX_FILE
from export.checkpoints import Checkpoints
from export.eval_scorers import OnnxModel
from export.onnx_export import check_parity, export_onnx
from export.publish import active_version, prune_and_activate, publish
from export.repository import scorer_versions, versions_folder
from export.train import Schedule, fit

SCORER = "rank"
LABELS = ("label", "second_label")


@dataclass(frozen=True)
class LoggedRows:
    """Joined sample rows: the served tensors, both labels, and who and when (answer order kept)."""

    features: dict[str, np.ndarray]
    label: np.ndarray  # float32 [N]
    second_label: np.ndarray  # float32 [N]
    user: np.ndarray  # int64 [N]
    answer: np.ndarray  # int64 [N]: the answer's rank in time order (0 oldest)

    def __len__(self) -> int:
        return len(self.label)


def read_samples(path: Path, history_len: int) -> LoggedRows:
    """The parquet `orchestrator.export_samples` wrote; raises ValueError naming what is missing."""
    if not path.exists():
        raise ValueError(f"{path} not found: write it with `python -m orchestrator.export_samples --out {path}`")
    table = pq.read_table(path)
    missing = sorted({*LABELS, "request_id", "user_id", "timestamp"} - set(table.column_names))
    if missing:
        raise ValueError(f"{path} lacks columns {missing}: export it again with this version's orchestrator.export_samples")
    columns = table.to_pydict()
    features = features_of_rows(columns, history_len)
    lacking = sorted(set(RANK_FEATURES) - set(features))
    if lacking:
        raise ValueError(f"{path} lacks the rank scorer's tensors {lacking}")
    return LoggedRows(features, np.asarray(columns["label"], np.float32), np.asarray(columns["second_label"], np.float32),
                      np.asarray(columns["user_id"], np.int64), answer_order(columns["request_id"], columns["timestamp"]))


def answer_order(request_ids: list[str], timestamps: list[int]) -> np.ndarray:
    """Each row's answer rank in time order: by the answer's timestamp, then by where the log first
    holds it (the samples stream is in serving order)."""
    first: dict[str, tuple[int, int]] = {}
    for i, (request_id, ts) in enumerate(zip(request_ids, timestamps)):
        first.setdefault(request_id, (int(ts), i))
    rank = {request_id: r for r, request_id in enumerate(sorted(first, key=first.__getitem__))}
    return np.array([rank[r] for r in request_ids], np.int64)


def latest_slice(rows: LoggedRows, eval_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Row indices to train on and to evaluate on: the latest `eval_fraction` of the answers
    (at least one) are evaluated, whole; raises ValueError when either side would be empty."""
    answers = int(rows.answer.max()) + 1 if len(rows) else 0
    if answers < 2:
        raise ValueError(f"the samples hold {answers} answer(s): retraining needs at least 2 (one to train on, one to judge by)")
    cut = answers - max(1, int(round(answers * eval_fraction)))
    held = rows.answer >= cut
    return np.flatnonzero(~held), np.flatnonzero(held)


@dataclass(frozen=True)
class Verdict:
    served_version: int
    served_auc: float
    retrained_auc: float
    gain: Interval  # retrained AUC minus served AUC, with its bootstrap interval
    train_rows: int
    eval_rows: int
    eval_positives: int
    wins: bool

    def as_dict(self) -> dict:
        return {**asdict(self), "gain": self.gain.as_dict()}


def served_scores(settings: Settings, version: int, features: dict[str, np.ndarray]) -> np.ndarray:
    """The served version's scores of logged rows: its ONNX in the repository, run as
    `export.eval_scorers.OnnxModel` runs it (with the head weights Triton would serve, `cascade.heads`)."""
    onnx = versions_folder(settings.model_repository, SCORER, settings.triton_profile) / str(version) / ONNX_FILE
    return OnnxModel(onnx)(features)


@torch.no_grad()
def model_scores(model: StudentRanker, features: dict[str, np.ndarray]) -> np.ndarray:
    model.eval()
    return model(*[torch.from_numpy(features[n]) for n in RANK_FEATURES]).numpy()


def judge(rows: LoggedRows, held: np.ndarray, served: np.ndarray, retrained: np.ndarray, train_rows: int,
          served_version: int, min_gain: float, seed: int) -> Verdict:
    """The verdict on the held-out rows: the retrained model wins when its AUC gain is at least
    `min_gain` and the gain's 95 % interval (a bootstrap over users) lies above 0."""
    labels = rows.label[held]
    if labels.min() == labels.max():
        raise ValueError(f"the latest slice's {len(held)} rows are all {'positive' if labels[0] else 'negative'}: no AUC to judge by")
    gain = UserBootstrap(rows.user[held], labels, seed=seed).difference(retrained, served)["auc"]
    return Verdict(served_version, roc_auc(labels, served), roc_auc(labels, retrained), gain, train_rows, len(held),
                   int(labels.sum()), gain.point >= min_gain and gain.low > 0.0)


def warm_start_version(settings: Settings, paths: ArtifactPaths) -> int:
    """The served version (the orchestrator's active one), else the newest version with weights."""
    active = active_version(settings, SCORER)
    if active is not None:
        return active
    with_weights = [v for v in scorer_versions(settings.model_repository, SCORER, settings.triton_profile)
                    if paths.weights(SCORER, v).exists()]
    if not with_weights:
        raise ValueError(f"no {SCORER} version has weights under {paths.weights(SCORER, 1).parent}: run `python -m export`")
    return with_weights[-1]


def load_student(tables: FeatureTables, path: Path, head_weights: tuple[float, float]) -> StudentRanker:
    if not path.exists():
        raise ValueError(f"{path} not found: the version to warm-start from has no weights (published before retraining existed?)")
    model = StudentRanker(tables.config)
    model.load_state_dict(torch.load(path, weights_only=True))
    model.set_head_weights(head_weights)
    return model


def train(model: StudentRanker, rows: LoggedRows, train_rows: np.ndarray, epochs: int, batch_size: int, seed: int,
          second_weight: float, lr: float) -> None:
    """Both heads on their labels from the logged tensors, `epochs` passes (`export.train.fit`)."""
    tensors = {n: torch.from_numpy(t) for n, t in rows.features.items()}
    labels, second = torch.from_numpy(rows.label), torch.from_numpy(rows.second_label)

    def loss(batch: np.ndarray) -> torch.Tensor:
        index = torch.from_numpy(batch)
        heads = model.head_probabilities(*[tensors[n][index] for n in RANK_FEATURES])
        return head_loss(heads, labels[index], 0) + second_weight * head_loss(heads, second[index], 1)

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        schedule = Schedule(epochs, batch_size, seed, Checkpoints(Path(scratch), {"retrain": seed}))
        fit("retrain", model, loss, train_rows, schedule, lr=lr)


def retrain(settings: Settings, samples: Path, eval_fraction: float = 0.2, epochs: int = 5, lr: float = 1e-3,
            min_gain: float = 0.005, from_version: int | None = None) -> tuple[Verdict, int | None]:
    """Steps 1-4 of the module's doc but activation: the verdict, and the published version (None: lost)."""
    rows = read_samples(samples, settings.history_len)
    paths = ArtifactPaths(settings.artifacts_dir)
    tables = FeatureTables.load(paths.tables)
    train_rows, held = latest_slice(rows, eval_fraction)
    version = from_version if from_version is not None else warm_start_version(settings, paths)
    model = load_student(tables, paths.weights(SCORER, version), settings.head_weights)
    held_features = {n: t[held] for n, t in rows.features.items()}
    served = served_scores(settings, version, held_features)
    train(model, rows, train_rows, epochs, settings.batch_size, settings.seed, settings.second_head_loss_weight, lr)
    verdict = judge(rows, held, served, model_scores(model, held_features), len(train_rows), version, min_gain, settings.seed)
    if not verdict.wins:
        return verdict, None
    onnx = paths.onnx(f"{SCORER}.retrained")
    sample = {n: t[train_rows[:512]] for n, t in rows.features.items()}
    export_onnx(model, rank_spec(settings.history_len), sample, onnx)
    check_parity(model, rank_spec(settings.history_len), sample, onnx)
    published = publish(settings, SCORER, onnx)
    torch.save(model.state_dict(), paths.weights(SCORER, published))
    return verdict, published


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.retrain", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, required=True, help="parquet from `python -m orchestrator.export_samples`")
    parser.add_argument("--eval-fraction", type=float, default=0.2, help="the latest share of answers held out to judge by")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--min-gain", type=float, default=0.005, help="the AUC the retrained model must gain to be published")
    parser.add_argument("--from-version", type=int, help="warm-start from this rank version (default: the served one)")
    parser.add_argument("--activate", action="store_true", help="move the orchestrator's traffic to a published version")
    args = parser.parse_args(argv)
    if not 0.0 < args.eval_fraction < 1.0 or args.epochs < 1:
        parser.error("--eval-fraction must lie in (0, 1) and --epochs be >= 1")
    try:
        settings = load_settings()
        verdict, version = retrain(settings, args.samples, args.eval_fraction, args.epochs, args.lr, args.min_gain, args.from_version)
    except (SettingsError, ValueError, FileNotFoundError) as err:
        print(f"not retrained: {err}", file=sys.stderr)
        return 2
    print(json.dumps(verdict.as_dict(), indent=2))
    g = verdict.gain
    print(f"latest slice ({verdict.eval_rows} rows, {verdict.eval_positives} positive): served v{verdict.served_version} "
          f"AUC {verdict.served_auc:.4f}, retrained {verdict.retrained_auc:.4f}, gain {g.point:+.4f} [{g.low:+.4f}, {g.high:+.4f}]")
    if version is None:
        print(f"not published: the gain is below --min-gain {args.min_gain} or its interval reaches 0")
        return 0
    return prune_and_activate(settings, SCORER, version, args.activate)


if __name__ == "__main__":
    sys.exit(main())
