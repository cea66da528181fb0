"""Which scorer versions the orchestrator may call: a ready pinned pipeline (and, where the scorer is a
model of its own, that version ready too)."""
from __future__ import annotations

import pytest

from cascade.triton.layout import pinned_version, pipeline_name
from orchestrator.versions import ScorerVersions, has_scorer_model, servable_versions


def test_gpu_layout_a_version_is_servable_when_it_and_its_pinned_ensemble_are_ready() -> None:
    index = [
        ("rank", 1, "READY"), ("rank", 2, "READY"), ("rank", 3, "UNAVAILABLE"),
        ("rank_pipeline_v1", 1, "READY"), ("rank_pipeline_v3", 1, "READY"),  # v2's pipeline not loaded yet
        ("prerank", 1, "READY"), ("prerank_pipeline_v1", 1, "UNLOADING"),
    ]
    assert has_scorer_model(index, "rank")
    assert servable_versions(index, "rank") == [1]
    assert servable_versions(index + [("rank_pipeline_v2", 1, "READY")], "rank") == [1, 2]
    assert servable_versions(index, "prerank") == []


def test_cpu_layout_a_version_is_servable_when_its_fused_pipeline_is_ready() -> None:
    """No standalone scorer model: the pinned pipeline carries its version's ONNX."""
    index = [
        ("rank_pipeline", 3, "READY"),  # the unpinned pipeline's versions are not pinned versions
        ("rank_pipeline_v1", 1, "READY"), ("rank_pipeline_v2", 1, "UNAVAILABLE"), ("rank_pipeline_v3", 1, "READY"),
        ("rank_pipeline_vx", 1, "READY"), ("prerank_pipeline_v4", 1, "READY"),
    ]
    assert not has_scorer_model(index, "rank")
    assert servable_versions(index, "rank") == [1, 3]
    assert servable_versions(index, "prerank") == [4]
    assert servable_versions([("rank_pipeline_v1", 1, "LOADING")], "rank") == []


def test_pinned_version_of_a_model_name() -> None:
    assert pinned_version("rank", "rank_pipeline_v12") == 12
    assert [pinned_version("rank", m) for m in ("rank_pipeline", "rank", "prerank_pipeline_v1", "rank_pipeline_v")] == [None] * 4


def test_pipeline_names() -> None:
    assert pipeline_name("rank") == "rank_pipeline" and pipeline_name("prerank", 12) == "prerank_pipeline_v12"
    with pytest.raises(ValueError, match="unknown scorer 'teacher'"):
        pipeline_name("teacher", 1)


def test_active_versions_start_from_the_manifest() -> None:
    versions = ScorerVersions({"prerank": 1, "rank": 3, "user_tower": 1})
    assert versions.active == {"prerank": 1, "rank": 3}
    assert versions.pipelines() == ["prerank_pipeline_v1", "rank_pipeline_v3"]
