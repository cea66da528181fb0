"""The oracle recall list on synthetic data: each user's items ranked by the generator's own probability
of being a held-out positive.

The oracle knows what no recommender can: the generator's hidden model (`export.synthetic.HiddenModel`)
and the user's held-out rows, how many there are, when, and which interest drew them. An item's
probability of being among the user's held-out positives is 1 − Π over those rows of (1 − P(the row
shows it) × P(click | shown)), and a list ranked by it holds the most held-out positives a list of its
length can expect. So its Recall@K bounds what any channel, or any merge of channels, can expect to
reach on these users: a merged list at 1.3x the best single channel needs the channels to come within
that ratio of this bound.
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from cascade.schema import Interactions
from cascade.settings import Settings
from export.eval_retrieval import HeldOutUsers
from export.synthetic import HiddenModel, simulate


def hidden_model(settings: Settings, log: Interactions) -> HiddenModel:
    """The hidden model of the settings' synthetic data, checked against `log` (the export's log):
    ValueError if the settings draw another log, as they would after a change of sizes or seed."""
    simulation = simulate(settings.n_users, settings.n_items, settings.n_interactions, settings.n_categories,
                          settings.seed)
    drawn = simulation.dataset.interactions
    if len(drawn) != len(log) or not (np.array_equal(drawn.user, log.user) and np.array_equal(drawn.item, log.item)
                                      and np.array_equal(drawn.ts, log.ts)):
        raise ValueError("the settings' synthetic generator does not draw the evaluated log (another size or seed?): "
                         "no oracle for it")
    return simulation.hidden


def positive_probability(hidden: HiddenModel, user: int, ts: np.ndarray, current: np.ndarray) -> np.ndarray:
    """float64 [n_items]: each item's probability of being among `user`'s positives over rows at
    timestamps `ts` drawn under interests `current` (int64 [R] each)."""
    items = np.arange(len(hidden.item_category))
    static = hidden.static_logit(np.full(len(items), user), items)
    logit = static[None, :] + hidden.context_logit(items[None, :], current[:, None], ts[:, None])
    shown_and_clicked = hidden.impression_probability(current) / (1.0 + np.exp(-logit))
    return -np.expm1(np.log1p(-shown_and_clicked).sum(axis=0))


def oracle_lists(hidden: HiddenModel, log: Interactions, train_mask: np.ndarray, held: HeldOutUsers, k: int) -> list[np.ndarray]:
    """Each held-out user's top-k items by `positive_probability` over their held-out rows (`~train_mask`),
    training items excluded, ties by item id; `log` sorted by (user, ts), as the export's is."""
    bounds = np.searchsorted(log.user, np.r_[held.users, held.users + 1]).reshape(2, -1).T
    lists = []
    for (start, stop), seen, user in tqdm(zip(bounds, held.train_items, held.users.tolist()), total=len(held),
                                          desc="oracle lists", unit="user", mininterval=1.0):
        rows = np.arange(start, stop)[~train_mask[start:stop]]
        probability = positive_probability(hidden, user, log.ts[rows], hidden.current[rows])
        probability[seen] = -np.inf
        lists.append(np.argsort(-probability, kind="stable")[:k].astype(np.int64))
    return lists
