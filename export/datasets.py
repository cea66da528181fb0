"""Pick the data source named by settings; both produce the one schema in cascade.schema."""
from __future__ import annotations

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
