"""The look-alike evaluation on a tiny real export: it learns, and writes its report."""
from __future__ import annotations

import json

from cascade.settings import Settings
from export.eval_lookalike import evaluate_lookalike, main, markdown


def test_the_evaluation_on_a_tiny_export_learns_and_writes_its_report(exported: Settings, tmp_path, monkeypatch) -> None:
    result = evaluate_lookalike(exported, tasks=60, resamples=50)
    at_100 = result["recall@100"]["methods"]
    assert set(at_100) == {"random", "most_active", "mean_pooled", "soft_attention", "ralm"}
    assert result["n_test_tasks"] > 10 and all(0.0 <= m["low"] <= m["point"] <= m["high"] <= 1.0 for m in at_100.values())
    assert at_100["ralm"]["point"] > at_100["random"]["point"], at_100
    assert "| ralm |" in markdown(result)
    assert result["onnx"]["parity_max_abs_diff"] < 1e-5 and (exported.artifacts_dir / "onnx" / "lookalike.eval.onnx").is_file()
    for name, value in exported.model_dump(mode="json").items():  # the CLI reads the export's settings from CASCADE_*
        if value is not None:
            monkeypatch.setenv(f"CASCADE_{name.upper()}", value if isinstance(value, str) else json.dumps(value))
    assert main(["--out", str(tmp_path), "--tasks", "30", "--threads", "1"]) == 0
    assert json.loads((tmp_path / "lookalike.json").read_text())["n_test_tasks"] > 0
    assert (tmp_path / "lookalike.md").read_text().startswith("## Look-alike audiences")
    assert (tmp_path / "lookalike.png").read_bytes()[:4] == b"\x89PNG"
