"""Where the export leaves its artefacts, and the manifest that describes them.

Written by `python -m export`, read (and checked) by the orchestrator at start.
Plain formats only: .npz/.npy arrays, .onnx models, a FAISS index file, manifest.json, and the
served rank's torch weights (tensors only, loaded with weights_only=True) for retraining.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ArtifactPaths:
    root: Path

    @property
    def tables(self) -> Path:
        return self.root / "tables.npz"

    @property
    def user_history(self) -> Path:
        return self.root / "user_history.npy"

    @property
    def item_embeddings(self) -> Path:
        return self.root / "item_embeddings.npy"

    @property
    def faiss_index(self) -> Path:
        return self.root / "items.faiss"

    @property
    def item_to_item(self) -> Path:
        return self.root / "item_to_item.npz"

    @property
    def users(self) -> Path:
        """Every user's look-alike inputs and location (`cascade.lookalike.users.UserTable`)."""
        return self.root / "users.npz"

    @property
    def item_likers(self) -> Path:
        """Each item's training likers (`cascade.lookalike.audience.Likers`): an item's seed users."""
        return self.root / "item_likers.npz"

    @property
    def user_index(self) -> Path:
        """Inner-product index over the users' embeddings: look-alike candidates."""
        return self.root / "users.faiss"

    @property
    def calibration(self) -> Path:
        return self.root / "calibration.npz"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    def onnx(self, name: str) -> Path:
        return self.root / "onnx" / f"{name}.onnx"

    def weights(self, name: str, version: int) -> Path:
        """The torch state of `name` as published at `version`: what `python -m export.retrain` warm-starts from."""
        return self.root / "weights" / f"{name}.v{version}.pt"


@dataclass(frozen=True)
class Manifest:
    dataset: str
    n_users: int
    n_items: int
    n_categories: int
    history_len: int
    embedding_dim: int
    model_versions: dict[str, int]
    source_commit: str
    created: str
    metrics: dict[str, float] = field(default_factory=dict)
    train_seconds: dict[str, float] = field(default_factory=dict)
    parity_max_abs_diff: dict[str, float] = field(default_factory=dict)
    models: dict[str, dict] = field(default_factory=dict)  # name -> file, sha256, params, flops_per_item, role
    quantized: dict[str, dict] = field(default_factory=dict)  # '<name>.<precision>' -> file, method, agreement
    calibration: dict = field(default_factory=dict)  # the INT8 calibration set: path, rows, sha256, tensors
    served: dict[str, str] = field(default_factory=dict)  # Triton model -> the ONNX file it serves
    item_to_item: dict = field(default_factory=dict)  # file, window, neighbours, items_with_neighbours, seconds
    lookalike: dict = field(default_factory=dict)  # the look-alike step's files and figures (export.lookalike)
    engines: dict[str, dict] = field(default_factory=dict)  # '<scorer>.<precision>' -> TensorRT engine (export.tensorrt)
    manifest_version: int = MANIFEST_VERSION

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @staticmethod
    def read(path: Path) -> "Manifest":
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `python -m export` first")
        data = json.loads(path.read_text())
        if data.get("manifest_version") != MANIFEST_VERSION:
            raise ValueError(f"{path}: manifest version {data.get('manifest_version')} != {MANIFEST_VERSION}; re-run the export")
        return Manifest(**data)


def sha256_file(path: Path) -> str:
    """The file's SHA-256, read in 1 MiB blocks (models and engines go into the manifest by it)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
