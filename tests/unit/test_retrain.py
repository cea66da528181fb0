"""export.retrain's pure parts: the log's answers in time order, the latest slice held out whole, the
verdict, and clear errors for samples it cannot learn from."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from export.retrain import LoggedRows, answer_order, judge, latest_slice, main, read_samples


def logged(answers: list[int], labels: list[float], users: list[int] | None = None) -> LoggedRows:
    n = len(answers)
    return LoggedRows({}, np.array(labels, np.float32), np.zeros(n, np.float32),
                      np.array(users if users is not None else list(range(n)), np.int64), np.array(answers, np.int64))


def test_answers_are_ordered_by_time_then_by_their_place_in_the_log() -> None:
    ids = ["b", "b", "a", "c", "a", "d"]
    ts = [20, 20, 10, 20, 10, 5]
    order = answer_order(ids, ts)
    assert order.tolist() == [2, 2, 1, 3, 1, 0]  # d (5), a (10), then b before c (both 20: b came first)


def test_the_latest_answers_are_held_out_whole() -> None:
    rows = logged([0, 0, 1, 1, 2, 2, 3, 3, 4, 4], [0, 1] * 5)
    train, held = latest_slice(rows, 0.4)
    assert held.tolist() == [6, 7, 8, 9] and train.tolist() == [0, 1, 2, 3, 4, 5]
    train, held = latest_slice(rows, 0.01)  # at least one answer
    assert held.tolist() == [8, 9]
    with pytest.raises(ValueError, match="at least 2"):
        latest_slice(logged([0, 0], [0, 1]), 0.5)


def test_the_retrained_model_wins_only_by_a_clear_margin() -> None:
    rng = np.random.default_rng(0)
    n = 400
    labels = (rng.random(n) < 0.3).astype(np.float32)
    rows = logged([0] * n, labels.tolist(), rng.integers(0, 40, n).tolist())
    held = np.arange(n)
    noise = rng.random(n)
    better = judge(rows, held, served=noise, retrained=labels + 0.5 * noise, train_rows=10, served_version=1, min_gain=0.01, seed=0)
    assert better.wins and better.retrained_auc > better.served_auc and better.gain.low > 0
    assert better.eval_rows == n and better.eval_positives == int(labels.sum())
    same = judge(rows, held, served=noise, retrained=noise + 1e-9 * rng.random(n), train_rows=10, served_version=1,
                 min_gain=0.01, seed=0)
    assert not same.wins
    with pytest.raises(ValueError, match="all negative"):
        judge(logged([0, 0], [0, 0]), np.arange(2), np.zeros(2), np.zeros(2), 1, 1, 0.0, 0)


def test_samples_it_cannot_learn_from_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        read_samples(tmp_path / "none.parquet", 3)
    old = tmp_path / "old.parquet"
    pq.write_table(pa.table({"request_id": ["r"], "user_id": [1], "timestamp": [5], "label": [1]}), old)
    with pytest.raises(ValueError, match=r"lacks columns \['second_label'\]"):
        read_samples(old, 3)
    bare = tmp_path / "bare.parquet"
    pq.write_table(pa.table({"request_id": ["r"], "user_id": [1], "timestamp": [5], "label": [1], "second_label": [0]}), bare)
    with pytest.raises(ValueError, match="lacks the rank scorer's tensors"):
        read_samples(bare, 3)


def test_the_command_says_why_it_did_not_retrain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--samples", str(tmp_path / "none.parquet")]) == 2
    assert "not retrained" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--samples", "x.parquet", "--eval-fraction", "1.5"])
