"""The look-alike evaluation on a tiny real export: it learns, and writes its report."""
from __future__ import annotations

import json

from cascade.settings import Settings
from export.eval_lookalike import evaluate_lookalike, main, markdown


def test_the_evaluation_on_a_tiny_export_learns_and_writes_its_report(exported: Settings, tmp_path, monkeypatch) -> None:
    result = evaluate_lookalike(exported, tasks=60, resamples=50)
    at_100 = result["recall@100"]["methods"]
    assert set(at_100) == {"random", "most_active", "mean_pooled", "soft_attention", "ralm", "ralm_served_pool"}
    assert result["n_test_tasks"] > 10 and all(0.0 <= m["low"] <= m["point"] <= m["high"] <= 1.0 for m in at_100.values())
    assert at_100["ralm"]["point"] > at_100["random"]["point"], at_100
    assert at_100["ralm_served_pool"]["point"] <= at_100["ralm"]["point"] + 1e-9  # a cut of the same order
    assert "| ralm |" in markdown(result)
    assert result["onnx"]["parity_max_abs_diff"] < 1e-5 and (exported.artifacts_dir / "onnx" / "lookalike.eval.onnx").is_file()
    for name, value in exported.model_dump(mode="json").items():  # the CLI reads the export's settings from CASCADE_*
        if value is not None:
            monkeypatch.setenv(f"CASCADE_{name.upper()}", value if isinstance(value, str) else json.dumps(value))
    assert main(["--out", str(tmp_path), "--tasks", "30", "--threads", "1"]) == 0
    assert json.loads((tmp_path / "lookalike.json").read_text())["n_test_tasks"] > 0
    assert (tmp_path / "lookalike.md").read_text().startswith("## Look-alike audiences")
    assert (tmp_path / "lookalike.png").read_bytes()[:4] == b"\x89PNG"


def test_the_served_pool_keeps_the_users_nearest_the_seeds_and_ranks_them_by_the_scorer() -> None:
    import numpy as np

    from cascade.lookalike.tasks import Task
    from export.eval_lookalike import in_served_pool

    embeddings = np.array([[1, 0], [1, 0.1], [0.9, 0.3], [0, 1], [-1, 0], [1, 0.05]], np.float32)
    task = Task(0, np.array([0]), np.array([0, 5]), {3}, np.ones(6, bool))
    scorer = lambda t: np.array([9.0, 1.0, 2.0, 5.0, 8.0, 7.0])  # noqa: E731
    out = in_served_pool(scorer, embeddings, size=2)(task)
    # nearest seed 0's direction, known users (0, 5) aside: users 1 and 2; the scorer orders them
    assert np.isfinite(out).tolist() == [False, True, True, False, False, False]
    assert out[2] > out[1]


def test_a_scorer_shared_by_two_methods_scores_each_task_once() -> None:
    import numpy as np

    from cascade.lookalike.tasks import Task
    from export.eval_lookalike import once_per_task

    calls: list[int] = []

    def scorer(task: Task) -> np.ndarray:
        calls.append(task.item)
        return np.full(3, float(task.item))

    tasks = [Task(item, np.array([0]), np.array([0]), {1}, np.ones(3, bool)) for item in (4, 9)]
    cached = once_per_task(scorer)
    assert [cached(t).tolist() for t in tasks + tasks] == [[4.0] * 3, [9.0] * 3] * 2
    assert calls == [4, 9]
