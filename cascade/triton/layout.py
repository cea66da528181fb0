"""Names in the Triton repositories, shared by the writer, the adapters and the orchestrator."""
from __future__ import annotations

from typing import Literal

TABLES_FILE = "tables.npz"
ONNX_FILE = "model.onnx"
FEATURE_ASSEMBLY_ADAPTER = "cascade.triton.feature_assembly_model"
ONNX_ADAPTER = "cascade.triton.onnx_model"
FUSED_ADAPTER = "cascade.triton.fused_model"

PINNED_PIPELINE_VERSION = 1  # a pinned pipeline `<scorer>_pipeline_v<N>` is model version 1 of its own
SCORERS = ("prerank", "rank")  # the served scorers; each has pipelines (raw request -> scores)

Profile = Literal["cpu", "gpu"]
"""`cpu`: each pipeline is one fused Python-backend model (feature assembly + ONNX Runtime).
`gpu`: each pipeline is an ensemble, feature_assembly -> the scorer (a native backend's model)."""


def pipeline_name(scorer: str, version: int | None = None) -> str:
    """`rank_pipeline` serves the newest `rank`; `rank_pipeline_v2` serves `rank` version 2 only.

    The orchestrator calls the pinned pipelines, so every answer knows which version scored it and a
    new version takes traffic only once the orchestrator is told to move to it.
    """
    if scorer not in SCORERS:
        raise ValueError(f"unknown scorer {scorer!r}; the scorers are {', '.join(SCORERS)}")
    return f"{scorer}_pipeline" if version is None else f"{scorer}_pipeline_v{int(version)}"


def pinned_version(scorer: str, model: str) -> int | None:
    """N when `model` is `scorer`'s pinned pipeline `<scorer>_pipeline_v<N>`, else None."""
    prefix = f"{pipeline_name(scorer)}_v"
    suffix = model[len(prefix):]
    return int(suffix) if model.startswith(prefix) and suffix.isdigit() else None
