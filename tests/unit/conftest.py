"""Shared tiny, hand-made data: a 2-user, 4-item, 3-category dataset and its feature tables."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from cascade.features import FeatureConfig, FeatureTables, build_tables, random_rows
from cascade.schema import Dataset, Interactions
from cascade.specs import ModelSpec
from export.onnx_export import export_onnx

Row = tuple[int, int, int, float]  # (user, item, ts, label)

# Small bucket counts keep the hashed ids readable; history_len 3 keeps padding visible.
TINY_CONFIG = FeatureConfig(history_len=3, item_buckets=101, category_buckets=11, user_field_buckets=13)

# Deliberately not in (user, ts) order.
TINY_LOG: list[Row] = [
    (1, 3, 150, 1.0),
    (0, 0, 100, 1.0),
    (0, 2, 300, 1.0),
    (1, 0, 400, 1.0),
    (0, 1, 200, 0.0),
    (1, 1, 250, 1.0),
]


def log_from_rows(rows: list[Row]) -> Interactions:
    """(user, item, ts, label) tuples in any order -> an Interactions log sorted by (user, ts)."""
    user, item, ts, label = (np.array(column) for column in zip(*rows))
    return Interactions.sorted(user, item, ts, label)


@pytest.fixture
def make_log() -> Callable[[list[Row]], Interactions]:
    return log_from_rows


@pytest.fixture
def tiny_dataset() -> Dataset:
    return Dataset(
        name="tiny",
        user_fields=np.array([[1, 0, 3], [2, 1, 4]], dtype=np.int64),
        item_category=np.array([0, 1, 2, 1], dtype=np.int64),
        item_numeric=np.array([10.0, 20.0, 5.0, 40.0], dtype=np.float32),
        n_categories=3,
        interactions=log_from_rows(TINY_LOG),
    ).validate()


@pytest.fixture
def tiny_tables(tiny_dataset: Dataset) -> FeatureTables:
    """Tables fitted on the whole tiny log: activity (3, 3), item positives (2, 1, 1, 1)."""
    return build_tables(tiny_dataset, tiny_dataset.interactions, TINY_CONFIG)


@pytest.fixture
def tiny_tables_path(tiny_tables: FeatureTables, tmp_path: Path) -> Path:
    path = tmp_path / "tables.npz"
    tiny_tables.save(path)
    return path


def export_tiny_scorer(model: torch.nn.Module, spec: ModelSpec, path: Path) -> Path:
    """`model` (over TINY_CONFIG) exported to ONNX at `path` from random feature rows."""
    export_onnx(model, spec, random_rows(TINY_CONFIG, 6, np.random.default_rng(0)), path)
    return path
