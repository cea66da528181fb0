"""Which scorer versions the orchestrator may call: ready in Triton, with a ready pinned pipeline."""
from __future__ import annotations

import pytest

from cascade.triton.layout import pipeline_name
from orchestrator.versions import ScorerVersions, servable_versions


def test_a_version_is_servable_when_it_and_its_pinned_pipeline_are_ready() -> None:
    index = [
        ("rank", 1, "READY"), ("rank", 2, "READY"), ("rank", 3, "UNAVAILABLE"),
        ("rank_pipeline_v1", 1, "READY"), ("rank_pipeline_v3", 1, "READY"),  # v2's pipeline not loaded yet
        ("prerank", 1, "READY"), ("prerank_pipeline_v1", 1, "UNLOADING"),
    ]
    assert servable_versions(index, "rank") == [1]
    assert servable_versions(index + [("rank_pipeline_v2", 1, "READY")], "rank") == [1, 2]
    assert servable_versions(index, "prerank") == []


def test_pipeline_names() -> None:
    assert pipeline_name("rank") == "rank_pipeline" and pipeline_name("prerank", 12) == "prerank_pipeline_v12"
    with pytest.raises(ValueError, match="unknown scorer 'teacher'"):
        pipeline_name("teacher", 1)


def test_active_versions_start_from_the_manifest() -> None:
    versions = ScorerVersions({"prerank": 1, "rank": 3, "user_tower": 1})
    assert versions.active == {"prerank": 1, "rank": 3}
    assert versions.pipelines() == ["prerank_pipeline_v1", "rank_pipeline_v3"]
