"""Train the suite: teacher ranker -> distilled student ranker -> pre-ranker distilled from the
student -> two-tower retrieval. Seeded, resumable per epoch, with progress bars."""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm import tqdm

from cascade.causal import as_of_rows
from cascade.features import FeatureTables, assemble
from cascade.history import HistoryIndex
from cascade.metrics import roc_auc
from cascade.models.scorers import PreRanker, StudentRanker, head_loss
from cascade.models.teacher import Teacher, TeacherEnsemble, TeacherRanker
from cascade.models.two_tower import TwoTower
from cascade.schema import Interactions, Split
from cascade.settings import Settings
from cascade.specs import ITEM_SIDE, PRERANK_FEATURES, RANK_FEATURES, USER_TOWER_FEATURES
from export.checkpoints import Checkpoints
from export.distill import DistillWeights, distillation_loss
from export.lists import CandidateLists, ListDistillation, graded_ndcg_within, list_kl

Batch = dict[str, torch.Tensor]


@dataclass
class Trained:
    teacher: Teacher
    student: StudentRanker
    prerank: PreRanker
    two_tower: TwoTower
    metrics: dict[str, float]
    seconds: dict[str, float]


class RowFeatures:
    """Assembles feature tensors for rows of the (user, ts)-sorted log, each as of its time: its
    history and what was known of its user and item strictly before it (`cascade.causal`).
    `as_served`: the counts serving reads instead (the training totals in `tables`), as a request at
    the row's time would get them from Triton's feature assembly."""

    def __init__(self, tables: FeatureTables, log: Interactions, as_served: bool = False) -> None:
        self.tables, self.log = tables, log
        self.history = HistoryIndex.build(log)
        self.known = None if as_served else as_of_rows(log)

    def __call__(self, rows: np.ndarray) -> Batch:
        log = self.log
        hist = self.history.rows(rows, self.tables.config.history_len)
        known = self.known.take(rows) if self.known is not None else None
        arrays = assemble(self.tables, log.user[rows], log.item[rows], hist, log.ts[rows], known)
        return {k: torch.from_numpy(v) for k, v in arrays.items()}


def _batches(rows: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    rows = rng.permutation(rows) if rng is not None else rows
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


@dataclass(frozen=True)
class Schedule:
    epochs: int  # at most; fewer when validation stops improving
    batch_size: int
    seed: int
    checkpoints: Checkpoints
    patience: int = 2  # epochs without a better validation score before training stops
    embedding_decay: float = 0.0  # AdamW weight decay on the model's embedding tables (nothing else decays)


Validate = Callable[[], float]  # the model's validation score now (higher is better)


def fit(name: str, model: torch.nn.Module, loss_fn: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray,
        schedule: Schedule, lr: float = 3e-3, extra: tuple[torch.nn.Module, ...] = (),
        validate: Validate | None = None) -> FitResult:
    """Adam over shuffled mini-batches of `rows` with a progress bar; resumes from the last
    finished epoch of this run. `extra` modules (e.g. a hint regressor) train alongside.
    Each epoch's shuffle is seeded by (seed, epoch), so a resumed run sees the same batches.

    With `validate`, each epoch ends with a validation score: training stops once `patience` epochs
    brought no better one, and the model keeps the weights of its best epoch (early stopping), the
    starting weights (epoch 0) included."""
    embeddings = [m.weight for module in (model, *extra) for m in module.modules() if isinstance(m, torch.nn.Embedding)]
    others = [p for m in (model, *extra) for p in m.parameters() if all(p is not e for e in embeddings)]
    opt = torch.optim.AdamW(
        [{"params": embeddings, "weight_decay": schedule.embedding_decay}, {"params": others, "weight_decay": 0.0}], lr=lr,
    )
    holder = torch.nn.ModuleList([model, *extra])
    progress = schedule.checkpoints.restore(name, holder, opt)
    if progress.epochs_done:
        print(f"{name}: resumed after epoch {progress.epochs_done}/{schedule.epochs}")
    start = time.perf_counter()
    scores: list[float] = []  # this run's validation scores, the start's first when it ran
    if validate is not None and progress.epochs_done == 0:  # the starting state competes too (a warm start)
        holder.eval()
        scores.append(validate())
        progress.best = {"epoch": 0, "score": scores[-1], "state": copy.deepcopy(model.state_dict())}
    for epoch in range(progress.epochs_done, schedule.epochs):
        if progress.stopped:
            break
        holder.train()
        rng = np.random.default_rng([schedule.seed, epoch])
        bar = tqdm(_batches(rows, schedule.batch_size, rng), desc=f"{name} epoch {epoch + 1}/{schedule.epochs}",
                   unit="batch", leave=False, mininterval=1.0)
        for batch in bar:
            loss = loss_fn(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        progress.epochs_done = epoch + 1
        if validate is not None:
            holder.eval()
            score = validate()
            scores.append(score)
            if progress.best is None or score > progress.best["score"]:
                progress.best = {"epoch": epoch + 1, "score": score, "state": copy.deepcopy(model.state_dict())}
            progress.stopped = epoch + 1 - progress.best["epoch"] >= schedule.patience
            print(f"{name} epoch {epoch + 1}: validation {score:.4f} (best {progress.best['score']:.4f} "
                  f"at epoch {progress.best['epoch']}){'; stopping' if progress.stopped else ''}")
        schedule.checkpoints.save(name, holder, opt, progress)
    if progress.best is not None:
        model.load_state_dict(progress.best["state"])
    holder.eval()
    best = progress.best or {}
    return FitResult(time.perf_counter() - start, progress.epochs_done, best.get("epoch"), best.get("score"), scores)


@dataclass(frozen=True)
class FitResult:
    seconds: float
    epochs: int  # trained in all
    best_epoch: int | None  # the epoch whose weights the model keeps (None: no validation, the last)
    best_score: float | None
    scores: list[float]  # validation scores of the epochs this run trained, the start's first (empty: no validation)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, names: tuple[str, ...], features: RowFeatures, rows: np.ndarray) -> np.ndarray:
    model.eval()
    out = [model.logits(*[f[n] for n in names]).numpy() for f in map(features, _batches(rows, 8192, None))]
    return np.concatenate(out) if out else np.empty(0, np.float32)


@torch.no_grad()
def predict_heads(student: StudentRanker, features: RowFeatures, rows: np.ndarray) -> torch.Tensor:
    """[len(rows), 2]: the student's head probabilities (`StudentRanker.head_probabilities`) on `rows`."""
    student.eval()
    out = [student.head_probabilities(*[f[n] for n in RANK_FEATURES]) for f in map(features, _batches(rows, 8192, None))]
    return torch.cat(out) if out else torch.empty(0, 2)


def head_metrics(student: StudentRanker, features: RowFeatures, rows: np.ndarray, log: Interactions) -> dict[str, float]:
    """The AUC of the second head on its label (the click head's is `rank_auc`), and of the served mix on each label."""
    heads = predict_heads(student, features, rows)
    served = student.mix(heads).numpy()
    click, second = log.label[rows], log.second_label[rows]
    return {
        "rank_second_head_auc": roc_auc(second, heads[:, 1].numpy()),
        "rank_served_click_auc": roc_auc(click, served), "rank_served_second_auc": roc_auc(second, served),
    }


VALIDATION_ROWS = 50_000  # at most this many validation rows score each epoch


def hide_user_ids(batch: Batch, fraction: float) -> Batch:
    """`batch` with the user id of about `fraction` of its rows replaced by the unknown bucket, so the
    models learn what to make of a user the export never saw (torch's seeded generator)."""
    user_cat = batch["user_cat"].clone()
    user_cat[torch.rand(len(user_cat)) < fraction, -1] = 0
    return {**batch, "user_cat": user_cat}


VALIDATION_METRIC = {"rank_lists": "valid_ndcg"}  # the phases not judged by validation AUC
VALIDATION_LISTS = 256  # validation rows whose candidate lists judge the listwise phase
LIST_LR = 3e-4  # the listwise phase fine-tunes a trained student: a third of a fresh model's rate


def distil_lists(student: StudentRanker, teacher: Teacher, candidates: CandidateLists, features: RowFeatures,
                 train_rows: np.ndarray, valid_rows: np.ndarray, labels: torch.Tensor, weights: DistillWeights,
                 lists: ListDistillation, schedule: Schedule) -> FitResult:
    """The student's listwise phase (`export.lists`): each step, `lists.rows` training rows get the
    pointwise distillation loss and a candidate list each, whose teacher order the student learns.
    Epochs of `lists.steps` steps, over one seeded draw of training rows; kept: the epoch (the start
    included) whose order of VALIDATION_LISTS fixed validation lists agrees best with the teacher's."""
    rng = np.random.default_rng([schedule.seed, 17])

    def student_scores(batch: Batch, items: np.ndarray) -> np.ndarray:
        return list_logits(student, candidates.features(batch, items), len(items)).numpy()

    valid = features(np.sort(rng.choice(valid_rows, min(len(valid_rows), VALIDATION_LISTS), replace=False)))
    valid_lists = candidates.features(valid, candidates.draw(valid, rng, student_scores))
    gains = torch.sigmoid(list_logits(teacher, valid_lists, len(valid["item_id"]))).numpy()

    def validate() -> float:
        return graded_ndcg_within(list_logits(student, valid_lists, len(valid["item_id"])).numpy(), gains)

    def loss(rows: np.ndarray) -> torch.Tensor:
        f = features(rows)
        x = [f[n] for n in RANK_FEATURES]
        items = candidates.features(f, candidates.draw(f, rng, student_scores))
        with torch.no_grad():
            t_logits = teacher.logits(*x)
        t_lists = list_logits(teacher, items, len(rows))
        s_lists = list_logits(student, items, len(rows), grad=True)
        return distillation_loss(student.logits(*x), t_logits, labels[rows], weights) + lists.weight * list_kl(
            s_lists, t_lists, lists.temperature)

    drawn = rng.choice(train_rows, min(len(train_rows), lists.steps * lists.rows), replace=False)
    phase = Schedule(lists.epochs, lists.rows, schedule.seed, schedule.checkpoints, schedule.patience, schedule.embedding_decay)
    return fit("student_lists", student, loss, drawn, phase, lr=LIST_LR, validate=validate)


def list_logits(model: torch.nn.Module, rows: Batch, n_lists: int, grad: bool = False) -> torch.Tensor:
    """[n_lists, M] logits of list row tensors (`CandidateLists.features`), with autograd only when `grad`."""
    with torch.set_grad_enabled(grad):
        return model.logits(*[rows[n] for n in RANK_FEATURES]).view(n_lists, -1)


MEMBER_SEED_STRIDE = 1_000  # teacher member k trains under seed + k * this: the members of `export.seeds`' runs never coincide


def member_schedule(schedule: Schedule, k: int) -> tuple[str, Schedule]:
    """Teacher member k's name (its checkpoint and progress bar: `teacher`, then `teacher_2`, ...) and
    schedule: the teacher's, under its own seed."""
    return ("teacher" if k == 0 else f"teacher_{k + 1}"), replace(schedule, seed=schedule.seed + k * MEMBER_SEED_STRIDE)


def train_all(tables: FeatureTables, log: Interactions, split: Split, schedules: dict[str, Schedule],
              weights: DistillWeights, hidden_user_ids: float = 0.3, head_weights: tuple[float, float] = (1.0, 0.0),
              lists: ListDistillation | None = None, teacher_members: int = 1) -> Trained:
    """`schedules` names one Schedule per model: teacher, student, prerank, two_tower. The rankers
    train on `split.train` until their (click) AUC on (up to VALIDATION_ROWS of) `split.valid` stops
    rising; the metrics are AUCs on `split.test`. With `lists`, the student then learns the teacher's
    order of candidate lists drawn from the two-tower (`distil_lists`), which trains before it.
    With `teacher_members` > 1 the teacher is a `TeacherEnsemble` of that many, each trained under
    its own seed (`member_schedule`).

    The student learns its click head from the teacher and the labels, its second head from
    `log.second_label` (`cascade.heads`); it serves their mix by `head_weights`, and the pre-ranker
    is distilled from that served score."""
    cfg = tables.config
    features = RowFeatures(tables, log)
    train_rows, test_rows = np.flatnonzero(split.train), np.flatnonzero(split.test)
    valid_rows = np.flatnonzero(split.valid)
    if len(valid_rows) > VALIDATION_ROWS:
        valid_rows = np.sort(np.random.default_rng(schedules["teacher"].seed).choice(valid_rows, VALIDATION_ROWS, replace=False))
    labels, second_labels = torch.from_numpy(log.label), torch.from_numpy(log.second_label)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    fits: dict[str, FitResult] = {}

    def training(rows: np.ndarray) -> Batch:
        return hide_user_ids(features(rows), hidden_user_ids)

    def validation(model: torch.nn.Module, names: tuple[str, ...]) -> Validate:
        return lambda: roc_auc(log.label[valid_rows], predict_logits(model, names, features, valid_rows))

    members = []
    for k in range(teacher_members):
        name, schedule = member_schedule(schedules["teacher"], k)
        torch.manual_seed(schedule.seed)
        member = TeacherRanker(cfg)

        def teacher_loss(rows: np.ndarray, member: TeacherRanker = member) -> torch.Tensor:
            f = training(rows)
            return bce(member.logits(*[f[n] for n in RANK_FEATURES]), labels[rows])

        fits[name] = fit(name, member, teacher_loss, train_rows, schedule, lr=1e-3, validate=validation(member, RANK_FEATURES))
        members.append(member)
    teacher = members[0] if teacher_members == 1 else TeacherEnsemble(members)

    torch.manual_seed(schedules["two_tower"].seed + 3)
    two_tower = TwoTower(cfg)
    log_q = torch.from_numpy(np.log((tables.item_positives + 1.0) / (tables.item_positives + 1.0).sum()).astype(np.float32))

    def retrieval_loss(rows: np.ndarray) -> torch.Tensor:
        f = training(rows)
        user = {n: f[n] for n in USER_TOWER_FEATURES}
        item = {n: f[n] for n in ITEM_SIDE}
        return two_tower.in_batch_loss(user, item, log_q[torch.from_numpy(log.item[rows])])

    positive_rows = train_rows[log.label[train_rows] > 0.5]
    fits["two_tower"] = fit("two_tower", two_tower, retrieval_loss, positive_rows, schedules["two_tower"])

    torch.manual_seed(schedules["student"].seed + 1)
    student = StudentRanker(cfg, head_weights=head_weights)
    regressor = torch.nn.Linear(student.hint_dim, teacher.hint_dim)  # training only, never exported

    def student_loss(rows: np.ndarray) -> torch.Tensor:
        f = training(rows)
        x = [f[n] for n in RANK_FEATURES]
        with torch.no_grad():
            t_hidden, t_logits = teacher.hidden_and_logits(*x)
        s_hidden, s_logits = student.hidden_and_logits(*x)
        second = head_loss(student.probabilities(s_hidden), second_labels[rows])
        return distillation_loss(s_logits, t_logits, labels[rows], weights, regressor(s_hidden), t_hidden) + weights.second * second

    fits["rank"] = fit("student", student, student_loss, train_rows, schedules["student"], extra=(regressor,),
                       validate=validation(student, RANK_FEATURES))
    if lists is not None and lists.rows > 0:
        candidates = CandidateLists(two_tower, tables, lists.depth, lists.size)
        fits["rank_lists"] = distil_lists(student, teacher, candidates, features, train_rows, valid_rows, labels,
                                          weights, lists, schedules["student"])

    # The second head learnt again on the trained body, from p(second | click) = 1/2 (its ranking the
    # click head's), keeping its best epoch on the second label's validation AUC, the start included:
    # by the click head's best epoch it had overfitted (MovieLens: 0.70 test AUC on 5-star ratings
    # against the click head's 0.74 on them).
    def second_loss(rows: np.ndarray) -> torch.Tensor:
        f = training(rows)
        with torch.no_grad():
            hidden = student.hidden(*[f[n] for n in RANK_FEATURES])
        return head_loss(student.probabilities(hidden), second_labels[rows])

    def second_validation() -> float:
        return roc_auc(log.second_label[valid_rows], predict_heads(student, features, valid_rows)[:, 1].numpy())

    torch.nn.init.zeros_(student.second.weight)
    torch.nn.init.zeros_(student.second.bias)
    fits["rank_second_head"] = fit("student_second_head", student.second, second_loss, train_rows, schedules["student"],
                                   validate=second_validation)

    torch.manual_seed(schedules["prerank"].seed + 2)
    prerank = PreRanker(cfg)
    prerank_weights = DistillWeights(weights.temperature, weights.label, hint=0.0)

    def prerank_loss(rows: np.ndarray) -> torch.Tensor:
        f = training(rows)
        with torch.no_grad():  # the logit of what the student serves
            s_logits = torch.logit(student(*[f[n] for n in RANK_FEATURES]), eps=1e-6)
        return distillation_loss(prerank.logits(*[f[n] for n in PRERANK_FEATURES]), s_logits, labels[rows], prerank_weights)

    fits["prerank"] = fit("prerank", prerank, prerank_loss, train_rows, schedules["prerank"],
                          validate=validation(prerank, PRERANK_FEATURES))

    y = log.label[test_rows]
    scored = (("teacher", teacher, RANK_FEATURES), ("rank", student, RANK_FEATURES), ("prerank", prerank, PRERANK_FEATURES))
    metrics = {f"{name}_auc": roc_auc(y, predict_logits(model, names, features, test_rows)) for name, model, names in scored}
    metrics |= head_metrics(student, features, test_rows, log)
    for name, result in fits.items():
        if result.best_epoch is not None:
            metrics[f"{name}_best_epoch"] = float(result.best_epoch)
            metrics[f"{name}_{VALIDATION_METRIC.get(name, 'valid_auc')}"] = float(result.best_score)
    if "rank_lists" in fits and fits["rank_lists"].scores:
        metrics["rank_lists_start_ndcg"] = float(fits["rank_lists"].scores[0])
    return Trained(teacher, student, prerank, two_tower, metrics, {n: r.seconds for n, r in fits.items()})


def train_with(settings: Settings, tables: FeatureTables, log: Interactions, split: Split, checkpoints: Checkpoints,
               seed: int | None = None) -> Trained:
    """`train_all` with the schedules and loss weights of `settings`; `seed` (default settings.seed)
    seeds the training alone, not the data."""
    seed = settings.seed if seed is None else seed
    schedules = {
        name: Schedule(epochs, batch, seed, checkpoints, patience, settings.embedding_weight_decay)
        for name, epochs, batch, patience in (
            ("teacher", settings.epochs, settings.batch_size, settings.teacher_patience),
            ("student", settings.distill_epochs, settings.batch_size, settings.patience),
            ("prerank", settings.distill_epochs, settings.batch_size, settings.patience),
            ("two_tower", settings.retrieval_epochs, settings.retrieval_batch_size, settings.patience),  # no validation
        )
    }
    weights = DistillWeights(
        settings.distill_temperature, settings.distill_label_weight, settings.distill_hint_weight, settings.second_head_loss_weight,
    )
    lists = ListDistillation(settings.distill_list_rows, settings.distill_list_size, settings.distill_list_temperature,
                             settings.distill_list_weight, settings.distill_list_steps, settings.distill_list_epochs,
                             settings.recall_ann_k)
    return train_all(tables, log, split, schedules, weights, settings.hidden_user_ids, settings.head_weights, lists,
                     settings.teacher_members)
