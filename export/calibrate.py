"""The calibration set: real training rows' feature tensors, saved once as .npz for every quantizer.

ONNX Runtime's static INT8 quantization (export/quantize.py) and, later, the TensorRT INT8 build
on GPU read the same file, so both calibrate on the same rows. The file holds every tensor of
`cascade.specs.feature_tensors(L)` (each model takes the subset it declares), one row per
(user, item) interaction of the training split, as assembled by `export.train.RowFeatures`.

Plain .npz (no pickle); the manifest entry records its row count, tensor dtypes/shapes and the
sha256 of the file bytes (np.savez stamps zip entries with the write time, so two writes of the
same rows hash differently: the hash identifies this file, not its content).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cascade.artifacts import ArtifactPaths, Manifest, sha256_file
from cascade.features import FeatureTables
from cascade.schema import Interactions
from cascade.settings import Settings
from cascade.specs import feature_tensors
from export.datasets import split_log
from export.train import RowFeatures

DEFAULT_ROWS = 2048


def check_features(features: dict[str, np.ndarray]) -> int:
    """Raises unless `features` is exactly feature_tensors(L), with spec dtypes and dims; returns rows."""
    if "hist_item" not in features:
        raise ValueError("calibration features lack hist_item (needed to know the history length)")
    specs = feature_tensors(int(features["hist_item"].shape[1]))
    if set(features) != set(specs):
        raise ValueError(f"calibration features {sorted(features)} != feature tensors {sorted(specs)}")
    rows = {name: int(t.shape[0]) for name, t in features.items()}
    if len(set(rows.values())) != 1 or 0 in rows.values():
        raise ValueError(f"calibration tensors need one non-zero row count, got {rows}")
    for name, spec in specs.items():
        t = features[name]
        if t.dtype != spec.dtype or t.shape[1:] != spec.dims:
            raise ValueError(f"calibration {name}: {t.dtype}{list(t.shape[1:])} != spec {np.dtype(spec.dtype)}{list(spec.dims)}")
    return next(iter(rows.values()))


def write_calibration_set(features: dict[str, np.ndarray], path: Path) -> dict:
    """Save `features` as .npz at `path`; return its manifest entry.

    The entry: {"path": file name (relative to the artefacts root it sits in), "rows": n,
    "sha256": of the file, "tensors": {name: [dtype, per-file shape]}}.
    """
    rows = check_features(features)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{name: np.ascontiguousarray(t) for name, t in features.items()})
    return {
        "path": path.name,
        "rows": rows,
        "sha256": sha256_file(path),
        "tensors": {name: [str(t.dtype), list(t.shape)] for name, t in sorted(features.items())},
    }


def load_calibration_set(path: Path, sha256: str | None = None) -> dict[str, np.ndarray]:
    """The tensors saved by `write_calibration_set`; checks the file's hash when one is given."""
    if sha256 is not None and (actual := sha256_file(path)) != sha256:
        raise ValueError(f"{path}: sha256 {actual} != manifest {sha256}; the calibration set changed")
    with np.load(path, allow_pickle=False) as z:
        features = {name: z[name] for name in z.files}
    check_features(features)
    return features


def calibration_features(
    tables: FeatureTables, log: Interactions, train_mask: np.ndarray, n: int = DEFAULT_ROWS, seed: int = 0
) -> dict[str, np.ndarray]:
    """Feature tensors of `n` random training rows (all of them when there are fewer), in log order."""
    train_rows = np.flatnonzero(train_mask)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(train_rows, size=min(n, len(train_rows)), replace=False))
    return {name: t.numpy() for name, t in RowFeatures(tables, log)(rows).items()}


def calibration_from_settings(settings: Settings, n: int = DEFAULT_ROWS, seed: int = 0) -> dict[str, np.ndarray]:
    """Rebuild calibration rows for an existing export: its dataset (regenerated from `settings`,
    checked against the manifest), its split and its saved feature tables."""
    from export.datasets import load_dataset

    paths = ArtifactPaths(settings.artifacts_dir)
    manifest = Manifest.read(paths.manifest)
    dataset = load_dataset(settings)
    seen = (dataset.name, dataset.n_users, dataset.n_items)
    expected = (manifest.dataset, manifest.n_users, manifest.n_items)
    if seen != expected:
        raise ValueError(f"settings give dataset {seen}, the export at {paths.root} used {expected}: set the same CASCADE_* variables")
    train_mask = split_log(dataset.interactions, settings).train
    return calibration_features(FeatureTables.load(paths.tables), dataset.interactions, train_mask, n, seed)
