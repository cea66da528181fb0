"""The RALM-style look-alike scorer: what its attention must not depend on, and that training on
look-alike tasks teaches it to find a seed set's audience."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cascade.models.lookalike import SeedAttention
from cascade.lookalike.tasks import Task, recalls
from cascade.lookalike.scorer import SeedScorer
from cascade.lookalike.users import UserSide
from export.lookalike import export_scorer, onnx_scores, padded, scorer_for, train_seed_attention

FIELD_BUCKETS = 11


def _inputs(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, ...]:
    return (torch.from_numpy(rng.normal(size=(n, 8)).astype(np.float32)),
            torch.from_numpy(rng.integers(0, FIELD_BUCKETS, (n, 3))), torch.from_numpy(rng.random((n, 1)).astype(np.float32)))


@pytest.fixture(scope="module")
def model() -> SeedAttention:
    torch.manual_seed(0)
    return SeedAttention(8, 3, FIELD_BUCKETS).eval()


def test_padding_seeds_does_not_change_the_scores(model: SeedAttention) -> None:
    rng = np.random.default_rng(0)
    seeds, candidates = _inputs(rng, 5), _inputs(rng, 7)
    pad = _inputs(rng, 3)
    padded_seeds = tuple(torch.cat([s, p])[None] for s, p in zip(seeds, pad))
    mask = torch.tensor([[True] * 5 + [False] * 3])
    with torch.no_grad():
        plain = model.batch_scores(tuple(s[None] for s in seeds), torch.ones(1, 5, dtype=torch.bool), tuple(c[None] for c in candidates))
        with_padding = model.batch_scores(padded_seeds, mask, tuple(c[None] for c in candidates))
    torch.testing.assert_close(plain, with_padding, rtol=0, atol=1e-5)


def test_the_order_of_the_seeds_does_not_matter_and_forward_is_one_task(model: SeedAttention) -> None:
    rng = np.random.default_rng(1)
    seeds, candidates = _inputs(rng, 6), _inputs(rng, 4)
    order = torch.from_numpy(rng.permutation(6))
    with torch.no_grad():
        a = model(*seeds, *candidates)
        b = model(*(s[order] for s in seeds), *candidates)
        batch = torch.sigmoid(model.batch_scores(tuple(s[None] for s in seeds), torch.ones(1, 6, dtype=torch.bool),
                                                 tuple(c[None] for c in candidates))[0])
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(a, batch, rtol=0, atol=1e-6)
    assert a.shape == (4,) and bool(((a > 0) & (a < 1)).all())


def test_padded_marks_the_real_seeds() -> None:
    ids, mask = padded([np.array([4, 5]), np.array([7])])
    assert ids.tolist() == [[4, 5], [7, 0]] and mask.tolist() == [[True, True], [True, False]]


def _toy_world(seed: int, users: int = 600, groups: int = 6) -> tuple[UserSide, np.ndarray]:
    """Users in groups: behaviour embeddings near their group's centre (noisy), one field the group
    (another noise). A seed set is 10 of a group's users; the rest of the group are its targets."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, groups, users)
    centres = rng.normal(size=(groups, 8))
    embedding = (centres[group] + 1.5 * rng.normal(size=(users, 8))).astype(np.float32)
    fields = np.stack([group + 1, rng.integers(1, FIELD_BUCKETS, users), rng.integers(1, FIELD_BUCKETS, users)], axis=1)
    return UserSide(embedding, fields.astype(np.int64), np.zeros((users, 1), np.float32)), group


def _tasks(group: np.ndarray, n: int, seed: int) -> list[Task]:
    rng = np.random.default_rng(seed)
    tasks = []
    for item in range(n):
        g = rng.integers(0, group.max() + 1)
        members = rng.permutation(np.flatnonzero(group == g))
        seeds, targets = members[:10], members[10:]
        tasks.append(Task(item, seeds, seeds, set(targets.tolist()), np.ones(len(group), bool)))
    return tasks


def test_training_on_look_alike_tasks_finds_the_seed_sets_audience() -> None:
    """A model that stops learning fails: trained, Recall@100 of the seed group's other ~90 users is
    far above random's (100/590) and the untrained model's."""
    side, group = _toy_world(0)
    train, valid = _tasks(group, 120, 1), _tasks(group, 40, 2)

    def recall(m: SeedAttention) -> float:
        scores = scorer_for(m, side)
        return float(np.nanmean(recalls(valid, lambda t: scores(t.seeds), (100,))[100]))

    torch.manual_seed(3)
    untrained = recall(SeedAttention(8, 3, FIELD_BUCKETS).eval())
    model, history = train_seed_attention(train, side, FIELD_BUCKETS, recall, epochs=4, seed=3)
    trained = recall(model)
    assert trained == pytest.approx(max(history))  # the best epoch is the one kept
    assert trained > 0.6 and trained > untrained + 0.2, (untrained, history)


def test_the_exported_graph_scores_as_the_torch_model(tmp_path) -> None:
    """Dynamic seeds and candidates: one ONNX graph serves any seed set against any number of users."""
    from export.onnx_export import session

    side, _ = _toy_world(5, users=300)
    torch.manual_seed(0)
    model = SeedAttention(8, 3, FIELD_BUCKETS).eval()
    assert export_scorer(model, side, tmp_path / "lookalike.onnx") < 1e-5
    seeds = np.array([3, 17, 42, 99])
    served = onnx_scores(session(tmp_path / "lookalike.onnx"), side, seeds)
    # the evaluation's scorer (every user encoded once) gives the graph's scores too
    np.testing.assert_allclose(served, 1 / (1 + np.exp(-scorer_for(model, side)(seeds))), rtol=0, atol=1e-5)

    # Triton's model: ids and the seeds' embeddings in, the same probabilities out, bad input refused naming the tensor
    scorer = SeedScorer(side, session(tmp_path / "lookalike.onnx"))
    exported = side.embedding[seeds]
    request = scorer.parse({"seed_ids": seeds[None], "seed_embeddings": exported.reshape(1, -1), "candidate_ids": np.arange(300)[None]})
    none = (seeds[:1], exported[:1], np.array([], np.int64))
    np.testing.assert_allclose(scorer.score([request, none])[0], served, atol=1e-6)
    assert scorer.score([none])[0].shape == (0,)
    # a seed re-embedded since the export scores as its new embedding says
    moved = exported.copy()
    moved[0] = side.embedding[250]
    live = scorer.score([scorer.parse({"seed_ids": seeds[None], "seed_embeddings": moved.reshape(1, -1), "candidate_ids": np.arange(300)[None]})])[0]
    with torch.inference_mode():
        expected = torch.sigmoid(model.logits(torch.from_numpy(moved), *side.tensors(seeds)[1:], *side.tensors(np.arange(300)))).numpy()
    np.testing.assert_allclose(live, expected, atol=1e-5)
    assert np.abs(live - served).max() > 1e-3
    one = {"seed_ids": np.array([[1]]), "seed_embeddings": side.embedding[1][None], "candidate_ids": np.array([[1]])}
    for bad, message in (({**one, "seed_ids": np.array([[300]])}, "seed_ids holds ids outside 0..299"),
                         ({**one, "candidate_ids": np.array([[-1]])}, "candidate_ids holds ids outside"),
                         ({**one, "seed_ids": np.zeros((1, 0), np.int64), "seed_embeddings": np.zeros((1, 0), np.float32)},
                          "seed_ids must hold 1.."),
                         ({**one, "seed_embeddings": np.zeros((1, 3), np.float32)}, "seed_embeddings must hold 1 x 8 values"),
                         ({**one, "seed_embeddings": np.full((1, 8), np.nan, np.float32)}, "not finite"),
                         ({k: v for k, v in one.items() if k != "seed_ids"}, "seed_ids is missing"),
                         ({k: v for k, v in one.items() if k != "seed_embeddings"}, "seed_embeddings is missing")):
        with pytest.raises(ValueError, match=message):
            scorer.parse(bad)


def test_users_are_read_as_of_the_cut_a_user_with_no_event_by_then_as_unknown(tiny_dataset, tiny_tables) -> None:
    """The tower learned every training user's id row from the whole training part: a task cut
    earlier must read a user with no event before the cut through the unknown bucket, and every
    user's counts as of the cut, or the scorer learns who comes back after it."""
    from cascade.causal import Totals
    from cascade.features import USER_ID_COLUMN
    from cascade.history import PAD_ITEM
    from export.lookalike import user_embeddings

    seen: list[dict[str, np.ndarray]] = []

    def tower(features: dict[str, np.ndarray]) -> np.ndarray:
        seen.append(features)
        return np.ones((len(features["user_cat"]), 2), np.float32)

    log = tiny_dataset.interactions
    before_cut = Totals.of(log.take(np.flatnonzero(log.user == 1)), tiny_tables.n_users, tiny_tables.n_items)
    empty = np.full((tiny_tables.n_users, tiny_tables.config.history_len), PAD_ITEM)
    embeddings = user_embeddings(tower, tiny_tables, empty, at=1_000, totals=before_cut)
    assert embeddings.shape == (2, 2) and np.allclose(np.linalg.norm(embeddings, axis=1), 1.0)
    ids = tiny_tables.user_cat_buckets[:, USER_ID_COLUMN]
    assert seen[0]["user_cat"][:, USER_ID_COLUMN].tolist() == [0, ids[1]]
    assert seen[0]["user_num"][0, 0] == 0.0 and seen[0]["user_num"][1, 0] > 0.0  # user 0: no events yet
    user_embeddings(tower, tiny_tables, empty, at=1_000)  # the training totals: both users known
    assert seen[1]["user_cat"][:, USER_ID_COLUMN].tolist() == ids.tolist() and min(ids) > 0
