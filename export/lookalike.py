"""Training the look-alike scorer (`cascade.models.lookalike.SeedAttention`) on look-alike tasks cut
from the training part of the log alone.

The training part is cut again by time (`CUT`): an item's likers before the cut are a seed set, its
new likers after the cut are the positives, and other users are negatives (every user, as the
evaluation's and serving's candidates; or, with `active_only`, those active after the cut). The users
for these tasks are read as of the cut: histories, counts and activity from before it, and a user
with no event before it gets the tower's unknown user-id bucket, whose id row the tower learned from
events after the cut. Read from the whole training part, those rows told the scorer who would come
back (on MovieLens, where most later likers join late, it reached Recall@100 0.07 on 300 test
tasks trained so, 0.33 read as of the cut, against random's 0.10). Each step takes a batch of (seed set, one positive, `NEGATIVES`
negatives) and a softmax cross-entropy over the 1 + `NEGATIVES` candidates. Training stops when
the caller's validation score (`export.eval_lookalike`: Recall@100 on validation tasks) stops rising.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cascade.artifacts import ArtifactPaths
from cascade.causal import Totals
from cascade.features import USER_ID_COLUMN, FeatureTables, assemble_users
from cascade.geo import geohash_buckets
from cascade.history import latest_histories
from cascade.lookalike.audience import Likers
from cascade.lookalike.tasks import Task, recalls, tasks_for
from cascade.lookalike.scorer import MAX_SEEDS, graph_scores
from cascade.lookalike.users import UserSide, UserTable
from cascade.models.lookalike import SeedAttention
from cascade.rerank.similarity import unit_rows
from cascade.schema import Dataset, Interactions
from cascade.settings import Settings
from cascade.specs import LOOKALIKE_GRAPH_INPUTS, LOOKALIKE_GRAPH_OUTPUT, USER_EMBEDDING
from export.eval_scorers import OnnxModel
from export.faiss_index import build_index, write_index
from export.locations import Locations, user_locations

CUT = 0.8  # the training part's time quantile that splits seeds from positives
NEGATIVES = 20
BATCH = 32
VALIDATION_K = 100  # training keeps the epoch with the best validation Recall@100
EMBED_BATCH = 4_096


def padded(seed_sets: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Seed sets as [B, N] user ids (padding repeats user 0) and a [B, N] mask of the real ones."""
    width = max(len(s) for s in seed_sets)
    ids, mask = np.zeros((len(seed_sets), width), np.int64), np.zeros((len(seed_sets), width), bool)
    for row, seeds in enumerate(seed_sets):
        ids[row, : len(seeds)], mask[row, : len(seeds)] = seeds, True
    return ids, mask


def scorer_for(model: SeedAttention, side: UserSide) -> Callable[[np.ndarray], np.ndarray]:
    """seeds -> the model's logits for every user against them. Every user is encoded once, here, not
    once per seed set (with 100k users: 0.37 s of a seed set's 0.51 s)."""
    with torch.inference_mode():
        everyone = model.users(*side.tensors(np.arange(len(side.embedding))))

    def scores(seeds: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            mask = torch.ones(1, len(seeds), dtype=torch.bool)
            return model.encoded_scores(everyone[torch.from_numpy(seeds)][None], mask, everyone[None])[0].numpy()
    return scores


def user_embeddings(tower: Callable[[dict[str, np.ndarray]], np.ndarray], tables: FeatureTables, histories: np.ndarray,
                    at: int, totals: Totals | None = None) -> np.ndarray:
    """Every user's unit-length user-tower embedding for their history as of `at`. `totals`: what
    was known of the users at `at` (default: the tables' training totals); a user with no event by
    then gets the unknown user-id bucket, as `FeatureTables.user_cat_buckets` gives a user with no
    training event."""
    users = np.arange(tables.n_users, dtype=np.int64)
    known = (totals or tables.totals).known(users, np.zeros(len(users), np.int64))
    parts = []
    for lo in range(0, len(users), EMBED_BATCH):
        batch = users[lo : lo + EMBED_BATCH]
        features = assemble_users(tables, batch, histories[batch], np.full(len(batch), at, np.int64), known.take(batch))
        features["user_cat"][known.user_events[batch] == 0, USER_ID_COLUMN] = 0
        parts.append(tower(features))
    return unit_rows(np.concatenate(parts), np.float32)


def training_tasks(log: Interactions, train: np.ndarray, tower: OnnxModel, tables: FeatureTables,
                   history_len: int, seed: int, places: np.ndarray | None, active_only: bool = False) -> tuple[list[Task], UserSide]:
    """Tasks cut from the training part alone (seeds before its `CUT` quantile of time, positives
    after), and the users as of that cut."""
    cut = int(np.quantile(log.ts[train], CUT))
    early = train & (log.ts < cut)
    early_rows = np.flatnonzero(early)
    histories = latest_histories(log.take(early_rows), tables.n_users, history_len)
    as_of_cut = Totals.of(log.take(early_rows), tables.n_users, tables.n_items)
    side = UserSide.of(user_embeddings(tower, tables, histories, cut, as_of_cut), tables.user_cat_buckets, log, early_rows, places)
    return tasks_for(log, early, train & ~early, 1 << 30, seed, active_only), side


def training_pairs(tasks: list[Task]) -> list[tuple[int, int]]:
    """(task index, positive user) for every positive of every task."""
    return [(i, user) for i, task in enumerate(tasks) for user in sorted(task.targets)]


def train_seed_attention(tasks: list[Task], side: UserSide, n_field_buckets: int, validate: Callable[[SeedAttention], float],
                         epochs: int = 20, patience: int = 2, seed: int = 7, lr: float = 1e-3) -> tuple[SeedAttention, list[float]]:
    """The scorer trained on `tasks` (`side`: the users as of the tasks' cut); the epoch with the best
    `validate` score is kept. Returns the model and each epoch's validation score."""
    torch.manual_seed(seed)
    model = SeedAttention(side.embedding.shape[1], side.fields.shape[1], n_field_buckets)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    pairs = training_pairs(tasks)
    if not pairs:
        raise ValueError("no look-alike training tasks: the training part has no item with seeds before and new likers after the cut")
    audiences = [np.flatnonzero(t.audience) for t in tasks]
    history, best, best_state = [], -np.inf, copy.deepcopy(model.state_dict())
    for epoch in range(epochs):
        rng = np.random.default_rng([seed, epoch])
        model.train()
        order = rng.permutation(len(pairs))
        for lo in tqdm(range(0, len(order), BATCH), desc=f"look-alike epoch {epoch + 1}", unit="batch", leave=False, mininterval=1.0):
            chosen = [pairs[j] for j in order[lo : lo + BATCH]]
            seed_ids, mask = padded([tasks[i].seeds for i, _ in chosen])
            candidates = np.array([[user, *rng.choice(audiences[i], NEGATIVES)] for i, user in chosen])
            logits = model.batch_scores(side.tensors(seed_ids), torch.from_numpy(mask), side.tensors(candidates))
            loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(chosen), dtype=torch.long))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        history.append(validate(model))
        if history[-1] > best:
            best, best_state = history[-1], copy.deepcopy(model.state_dict())
        elif epoch + 1 - int(np.argmax(history)) - 1 >= patience:
            break
    model.load_state_dict(best_state)
    return model.eval(), history


def _validation_recall(valid: list[Task], scores: Callable[[np.ndarray], np.ndarray]) -> float:
    return float(np.nanmean(recalls(valid, lambda t: scores(t.seeds), (VALIDATION_K,))[VALIDATION_K]))


def export_scorer(model: SeedAttention, side: UserSide, path: Path, seed: int = 0) -> float:
    """The scorer as ONNX (one seed set [N, ...] against C candidates [C, ...], both dynamic: the
    graph a server runs); returns the largest |ONNX Runtime - torch| over a few sample shapes."""
    from export.onnx_export import session, write_onnx

    rng = np.random.default_rng(seed)
    sample = rng.permutation(len(side.embedding))
    args = (*side.tensors(sample[:7]), *side.tensors(sample[7:18]))
    seeds, candidates = torch.export.Dim("seeds", min=1, max=MAX_SEEDS), torch.export.Dim("candidates", min=1, max=1 << 20)
    write_onnx(model, args, path, list(LOOKALIKE_GRAPH_INPUTS), [LOOKALIKE_GRAPH_OUTPUT],
               tuple({0: seeds} for _ in range(3)) + tuple({0: candidates} for _ in range(3)))
    served, worst = session(path), 0.0
    for n_seeds, n_candidates in ((1, 1), (5, 40), (min(50, len(sample) // 2), len(sample) // 2)):
        feed = (*side.tensors(sample[:n_seeds]), *side.tensors(sample[n_seeds : n_seeds + n_candidates]))
        with torch.inference_mode():
            expected = model(*feed).numpy()
        got = graph_scores(served, side, sample[:n_seeds], sample[n_seeds : n_seeds + n_candidates])
        worst = max(worst, float(np.max(np.abs(got - expected))))
    return worst


def onnx_scores(served, side: UserSide, seeds: np.ndarray) -> np.ndarray:  # served: onnxruntime.InferenceSession
    """The exported scorer's probabilities for every user against one seed set."""
    return graph_scores(served, side, seeds, np.arange(side.n_users))


@dataclass(frozen=True)
class Fitted:
    """The trained scorer, the users as serving reads them, and how training went."""

    table: UserTable
    model: SeedAttention
    validation: list[float]  # Recall@`VALIDATION_K` on the validation tasks, by epoch
    parity: float  # the exported graph's largest |ONNX Runtime - torch|


def fit_lookalike(settings: Settings, log: Interactions, train: np.ndarray, tables: FeatureTables, tower: OnnxModel,
                  histories: np.ndarray, where: Locations, valid: list[Task], onnx_path: Path, locations: bool = True,
                  train_seed: int | None = None, active_only: bool = False) -> Fitted:
    """Every user as of the end of training (`histories`: the exported ones), the scorer trained on
    tasks from the training part and stopped on `valid`, exported to `onnx_path`. `locations` False:
    the scorer without geohash fields (the evaluation's ablation); `active_only`: negatives only
    from the users active after the cut (`training_tasks`), for `valid` tasks cut the same way."""
    train_rows = np.flatnonzero(train)
    at = int(log.ts[train_rows].max()) + 1
    places = geohash_buckets(where.lat, where.lon, tables.config.user_field_buckets) if locations else None
    side = UserSide.of(user_embeddings(tower, tables, histories, at), tables.user_cat_buckets, log, train_rows, places)
    model, history = train_seed_attention(
        *training_tasks(log, train, tower, tables, settings.history_len, settings.seed, places, active_only),
        tables.config.user_field_buckets,
        lambda m: _validation_recall(valid, scorer_for(m, side)),
        epochs=settings.lookalike_epochs, seed=settings.seed if train_seed is None else train_seed, lr=settings.lookalike_lr)
    parity = export_scorer(model, side, onnx_path, settings.seed)
    return Fitted(UserTable(side, where.lat, where.lon), model, history, parity)


def export_lookalike(settings: Settings, dataset: Dataset, log: Interactions, train: np.ndarray, valid: np.ndarray,
                     tables: FeatureTables, paths: ArtifactPaths) -> dict:
    """The export's look-alike step: the scorer (`<artifacts>/onnx/lookalike.onnx`), the users' table
    with their locations (`users.npz`), each item's training likers (`item_likers.npz`: an item's
    seeds) and an inner-product index over the users' embeddings (`users.faiss`). Returns the
    manifest's entry."""
    started = time.perf_counter()
    tower = OnnxModel(paths.onnx("user_tower"), USER_EMBEDDING)
    tasks = tasks_for(log, train, valid, settings.lookalike_valid_tasks, settings.seed)
    where = user_locations(settings, dataset, train)
    fitted = fit_lookalike(settings, log, train, tables, tower, np.load(paths.user_history), where, tasks, paths.onnx("lookalike"))
    fitted.table.save(paths.users)
    liked = np.flatnonzero(train & (log.label > 0.5))
    likers = Likers.of(log.item[liked], log.user[liked], log.ts[liked], dataset.n_items)
    np.savez(paths.item_likers, ptr=likers.ptr, users=likers.users)
    write_index(build_index(fitted.table.side.embedding), paths.user_index)
    return {
        "file": paths.onnx("lookalike").name, "users": paths.users.name, "index": paths.user_index.name,
        "validation_tasks": len(tasks), f"validation_recall@{VALIDATION_K}_by_epoch": fitted.validation,
        "users_located": int(fitted.table.located.sum()), "users_with_behaviour": int(fitted.table.behaviour.sum()),
        "parity_max_abs_diff": fitted.parity, "seconds": time.perf_counter() - started,
    }
