"""Names in the Triton repositories, shared by the writer, the adapters and the orchestrator."""
from __future__ import annotations

TABLES_FILE = "tables.npz"
ONNX_FILE = "model.onnx"
FEATURE_ASSEMBLY_ADAPTER = "cascade.triton.feature_assembly_model"
ONNX_ADAPTER = "cascade.triton.onnx_model"

SCORERS = ("prerank", "rank")  # the served scorers; each has a pipeline (feature_assembly -> scorer)


def pipeline_name(scorer: str, version: int | None = None) -> str:
    """`rank_pipeline` calls the newest loaded `rank`; `rank_pipeline_v2` calls `rank` version 2 only.

    The orchestrator calls the pinned pipelines, so every answer knows which version scored it and a
    new version takes traffic only once the orchestrator is told to move to it.
    """
    if scorer not in SCORERS:
        raise ValueError(f"unknown scorer {scorer!r}; the scorers are {', '.join(SCORERS)}")
    return f"{scorer}_pipeline" if version is None else f"{scorer}_pipeline_v{int(version)}"
