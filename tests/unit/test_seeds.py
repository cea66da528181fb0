"""export.seeds: the rankers retrained under other training seeds on the same data, summarised."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascade.settings import Settings
from export.report import _optional_md
from export.provenance import source_commit
from export.seeds import SEEDS_FILE, main, read_seeds, summarise


def test_summary_gives_mean_sd_and_range_across_seeds() -> None:
    got = summarise({1: {"teacher_auc": 0.70}, 2: {"teacher_auc": 0.74}, 3: {"teacher_auc": 0.72}})
    assert got["teacher_auc"] == pytest.approx({"mean": 0.72, "std": 0.02, "min": 0.70, "max": 0.74})
    assert summarise({1: {"rank_auc": 0.7}})["rank_auc"]["std"] == 0.0


def test_two_seeds_train_on_one_dataset_and_land_in_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = dict(n_users=60, n_items=300, n_interactions=3_000, n_categories=5, epochs=1, distill_epochs=1,
                 retrieval_epochs=1, distill_list_steps=20, distill_list_epochs=1, artifacts_dir=tmp_path / "artifacts")
    for name, value in small.items():
        monkeypatch.setenv(f"CASCADE_{name.upper()}", str(value))
    assert main(["--seeds", "3", "4"]) == 0
    seeds = read_seeds(tmp_path / "artifacts" / "report" / SEEDS_FILE)
    assert seeds is not None and set(seeds["seeds"]) == {"3", "4"}  # JSON keys
    first, second = seeds["seeds"].values()
    assert first["teacher_auc"] != second["teacher_auc"]  # other seeds, other models
    assert (tmp_path / "artifacts" / "checkpoints" / "seed-3").is_dir()
    assert seeds["dataset"] == "synthetic" and Settings().n_users == 60
    report = {"seeds": json.loads(json.dumps(seeds))}
    section = "\n\n".join(_optional_md(report))
    assert "## Seeds" in section and "mean ± sd" in section
    assert seeds["teacher_members"] == Settings().teacher_members and "not the export's" not in section
    assert seeds["source_commit"] == source_commit() and "The seeds ran on commit" not in section  # no manifest here


def test_the_report_says_when_the_seeds_trained_another_teacher() -> None:
    written_before = {"seeds": {"7": {"teacher_auc": 0.75}}, "summary": summarise({7: {"teacher_auc": 0.75}})}
    section = "\n\n".join(_optional_md({"seeds": written_before, "settings": {"teacher_members": 3}}))
    assert "a teacher of 1 member(s), not the export's 3" in section
    same = {**written_before, "teacher_members": 3}
    assert "not the export's" not in "\n\n".join(_optional_md({"seeds": same, "settings": {"teacher_members": 3}}))


def test_the_report_says_when_another_commit_trained_the_seeds() -> None:
    seeds = {"teacher_members": 3, "source_commit": "abc1234", "seeds": {"7": {"teacher_auc": 0.75}},
             "summary": summarise({7: {"teacher_auc": 0.75}})}
    export = {"settings": {"teacher_members": 3}, "manifest": {"source_commit": "def5678"}}
    assert "The seeds ran on commit abc1234, the export on def5678" in "\n\n".join(_optional_md({"seeds": seeds, **export}))
    unrecorded = {k: v for k, v in seeds.items() if k != "source_commit"}
    assert "commit unknown (seeds.json from before it recorded one)" in "\n\n".join(_optional_md({"seeds": unrecorded, **export}))
    same = {**export, "manifest": {"source_commit": "abc1234"}}
    assert "The seeds ran on commit" not in "\n\n".join(_optional_md({"seeds": seeds, **same}))
