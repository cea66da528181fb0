"""Pick the data source named by settings; both produce the one schema in cascade.schema."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.features import FeatureConfig, FeatureTables, build_tables
from cascade.schema import Dataset, Interactions, Split, time_split
from cascade.settings import Settings


def load_dataset(settings: Settings) -> Dataset:
    if settings.data_source == "movielens":
        from export.movielens import load_movielens

        return load_movielens(settings.cache_dir)
    from export.synthetic import generate

    return generate(settings.n_users, settings.n_items, settings.n_interactions, settings.n_categories, settings.seed)


def split_log(log: Interactions, settings: Settings) -> Split:
    """The export's train / validation / test split of `log` (a global time split)."""
    return time_split(log, settings.valid_fraction, settings.holdout_fraction)


@dataclass(frozen=True)
class Prepared:
    """What training starts from: the data, its split, the training rows and the feature tables fitted on them."""

    dataset: Dataset
    split: Split
    train_log: Interactions
    tables: FeatureTables

    @property
    def log(self) -> Interactions:
        return self.dataset.interactions


def prepare(settings: Settings) -> Prepared:
    """The export's data, split and feature tables (fitted on the training part alone)."""
    dataset = load_dataset(settings)
    split = split_log(dataset.interactions, settings)
    train_log = dataset.interactions.take(np.flatnonzero(split.train))
    tables = build_tables(dataset, train_log, FeatureConfig(history_len=settings.history_len))
    return Prepared(dataset, split, train_log, tables)
