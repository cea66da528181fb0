"""AnnRecall.search_many: one user-tower call and one FAISS search for many users, each user getting
the bits it gets alone (a real, untrained user tower exported to ONNX; a flat index of real size)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cascade.features import FeatureTables, assemble_users
from cascade.models.two_tower import TwoTower
from cascade.recall.ann import AnnRecall, single_threaded_faiss
from cascade.specs import USER_TOWER_FEATURES, user_tower_spec
from export.faiss_index import build_index
from export.onnx_export import export_onnx


def test_batched_answers_equal_lone_answers(tiny_tables: FeatureTables, tmp_path: Path) -> None:
    single_threaded_faiss()  # as on the recall pool's threads
    torch.manual_seed(0)
    L = tiny_tables.config.history_len
    model = TwoTower(tiny_tables.config)
    rng = np.random.default_rng(0)
    n = 16
    user_ids = np.array([0, 1, 5, -1] * 4, dtype=np.int64)  # 5 and -1: unknown users
    histories = rng.integers(-1, tiny_tables.n_items, (n, L))
    timestamps = rng.integers(1_700_000_000, 1_800_000_000, n)
    sample = assemble_users(tiny_tables, user_ids, histories, timestamps)
    path = tmp_path / "user_tower.onnx"
    export_onnx(model.user_tower, user_tower_spec(L, model.out_dim), {f: sample[f] for f in USER_TOWER_FEATURES}, path)
    items = rng.normal(size=(20_000, model.out_dim)).astype(np.float32)
    ann = AnnRecall(tiny_tables, path, build_index(items, kind="flat"))

    alone = [ann.search_many(user_ids[[i]], histories[[i]], timestamps[[i]], 1_000)[0] for i in range(n)]
    for size in (2, 5, 16):
        together = ann.search_many(user_ids[:size], histories[:size], timestamps[:size], 1_000)
        for (ids, scores), (lone_ids, lone_scores) in zip(together, alone):
            np.testing.assert_array_equal(ids, lone_ids)
            np.testing.assert_array_equal(scores, lone_scores)
    ids, scores = alone[0]
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and len(ids) == 1_000
    assert np.all(np.diff(scores) <= 0)
    assert len(ann.search_many(user_ids[:1], histories[:1], timestamps[:1], 50_000)[0][0]) == 20_000  # k > catalogue
