"""Synthetic recommendation data with a hidden preference model, so quality is measurable.

Users have three categorical fields and a latent taste; items have a category, a price-like value
and a Zipf popularity. Each user's interest moves from one category to another half-way through
their timeline, so the behaviour sequence carries signal that user fields alone do not.
Clicks are drawn from a logistic model of taste match, current interest, popularity, price and
hour of day. A click converts (the ranker's second objective, `cascade.heads`) with a probability
that weighs taste and price more and popularity against it, so the two heads rank differently.
`simulate` returns the hidden model beside the dataset, for the oracle bound (`export.eval_oracle`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.schema import Dataset, Interactions

EPOCH = 1_700_000_000
SPAN_S = 60 * 86_400
FIELD_CARDINALITY = (7, 2, 21)
LATENT_DIM = 16


@dataclass(frozen=True)
class HiddenModel:
    """What the generator knew and the log does not show. With it, an evaluation can rank by the
    generator's own probabilities: a bound that no recommender, which sees only the log, can expect
    to beat (`export.eval_oracle`)."""

    user_vec: np.ndarray  # float64 [n_users, LATENT_DIM]: latent taste
    item_vec: np.ndarray  # float64 [n_items, LATENT_DIM]
    item_category: np.ndarray  # int64 [n_items]
    item_price: np.ndarray  # float32 [n_items]
    popularity: np.ndarray  # float64 [n_items], sums to 1: the popularity half of the impressions
    current: np.ndarray  # int64 [rows]: the category each row's user was interested in, in log order
    n_categories: int

    def static_logit(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The part of the click logit that does not change with time: taste match, popularity, price."""
        n_items, d = self.item_vec.shape
        return (
            1.2 * np.sum(self.user_vec[users] * self.item_vec[items], axis=-1) / np.sqrt(d) / 1.5
            + 0.25 * np.log(self.popularity[items] * n_items)
            - 0.4 * (np.log(self.item_price[items]) - 3.0)
            - 2.8
        )

    def context_logit(self, items: np.ndarray, current: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """The rest of it: the user's current interest, and the hour of day (clicks peak at 20:00)."""
        hour = (ts // 3600) % 24
        return 1.5 * (self.item_category[items] == current) + 0.4 * np.cos(2 * np.pi * (hour - 20) / 24)

    def impression_probability(self, current: np.ndarray) -> np.ndarray:
        """P(an impression is item i) for rows whose interest is `current` (int64 [R]): float64
        [R, n_items]. Half the impressions come from popularity, half uniformly from the current
        interest's category (all from popularity where that category is empty), as `simulate` draws them."""
        count = np.bincount(self.item_category, minlength=self.n_categories)[current][:, None]
        in_category = (self.item_category[None, :] == current[:, None]) / np.maximum(count, 1)
        return np.where(count > 0, 0.5 * self.popularity + 0.5 * in_category, self.popularity)


@dataclass(frozen=True)
class Simulation:
    dataset: Dataset
    hidden: HiddenModel


def generate(
    n_users: int, n_items: int, n_interactions: int, n_categories: int, seed: int
) -> Dataset:
    return simulate(n_users, n_items, n_interactions, n_categories, seed).dataset


def simulate(
    n_users: int, n_items: int, n_interactions: int, n_categories: int, seed: int
) -> Simulation:
    """The synthetic dataset and the hidden model it was drawn from (`generate` keeps the dataset)."""
    rng = np.random.default_rng(seed)
    d = LATENT_DIM

    # items: category, latent vector, price, popularity
    cat_weights = 1.0 / np.arange(1, n_categories + 1) ** 0.6
    item_category = rng.choice(n_categories, n_items, p=cat_weights / cat_weights.sum())
    cat_vec = rng.normal(size=(n_categories, d))
    item_vec = 0.8 * cat_vec[item_category] + 0.6 * rng.normal(size=(n_items, d))
    item_price = np.exp(rng.normal(3.0 + 0.05 * item_category, 0.5)).astype(np.float32)
    pop = 1.0 / (rng.permutation(n_items) + 10.0) ** 0.9
    pop /= pop.sum()

    # users: fields, latent taste, activity, two interests
    user_fields = np.stack([rng.integers(0, c, n_users) for c in FIELD_CARDINALITY], axis=1)
    field_vec = [rng.normal(size=(c, d)) for c in FIELD_CARDINALITY]
    user_vec = sum(field_vec[f][user_fields[:, f]] for f in range(3)) * 0.5 + rng.normal(size=(n_users, d))
    affinity = user_vec @ cat_vec.T + rng.gumbel(size=(n_users, n_categories)) * 2.0
    interests = np.argsort(-affinity, axis=1)[:, :2]

    activity = rng.lognormal(0.0, 0.8, n_users)
    counts = 5 + rng.multinomial(max(n_interactions - 5 * n_users, 0), activity / activity.sum())
    user = np.repeat(np.arange(n_users), counts)
    n = len(user)
    ts = EPOCH + rng.integers(0, SPAN_S, n)
    order = np.lexsort((ts, user))
    ts = ts[order]
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    position = (np.arange(n) - np.repeat(starts, counts)) / np.repeat(counts, counts)
    switch = rng.uniform(0.3, 0.7, n_users)[user]
    current = np.where(position < switch, interests[user, 0], interests[user, 1])

    # impressions: half from popularity, half from the current interest's category
    by_cat = np.argsort(item_category, kind="stable")
    cat_start = np.searchsorted(item_category[by_cat], np.arange(n_categories))
    cat_count = np.bincount(item_category, minlength=n_categories)
    from_interest = rng.random(n) < 0.5
    in_cat = by_cat[np.minimum(cat_start[current] + (rng.random(n) * cat_count[current]).astype(np.int64), n_items - 1)]
    item = np.where(from_interest & (cat_count[current] > 0), in_cat, rng.choice(n_items, n, p=pop))

    hidden = HiddenModel(user_vec, item_vec, item_category.astype(np.int64), item_price, pop, current.astype(np.int64), n_categories)
    logit = hidden.static_logit(user, item) + hidden.context_logit(item, current, ts)
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    conversion_logit = (  # price-sensitive, and popular items draw clicks that do not convert
        2.0 * np.einsum("nd,nd->n", user_vec[user], item_vec[item]) / np.sqrt(d) / 1.5
        - 2.0 * (np.log(item_price[item]) - 3.0)
        - 0.5 * np.log(pop[item] * n_items)
        - 0.5
    )
    converted = label * (rng.random(n) < 1.0 / (1.0 + np.exp(-conversion_logit)))
    dataset = Dataset(
        name="synthetic",
        user_fields=user_fields.astype(np.int64),
        item_category=item_category.astype(np.int64),
        item_numeric=item_price,
        n_categories=n_categories,
        interactions=Interactions.sorted(user, item, ts, label, converted.astype(np.float32)),
    ).validate()
    # rows were drawn in (user, ts) order already, so `current` is in the log's order
    return Simulation(dataset, hidden)
