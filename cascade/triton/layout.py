"""Names in the Triton repositories, shared by the writer, the adapters and the orchestrator."""
from __future__ import annotations

import re
from typing import Literal

TABLES_FILE = "tables.npz"
ONNX_FILE = "model.onnx"
FEATURE_ASSEMBLY_ADAPTER = "cascade.triton.feature_assembly_model"
TORCH_SCORER_ADAPTER = "cascade.triton.torch_scorer_model"
PROGRAM_FILE = "model.pt2"  # the GPU profile's Python scorer: a torch.export program of the row graph
PLAN_FILE = "model.plan"  # the GPU profile's TensorRT engine (`python -m export.tensorrt --install`)
FUSED_ADAPTER = "cascade.triton.fused_model"
TWO_STAGE_ADAPTER = "cascade.triton.two_stage_model"
PRERANK_ONNX_FILE = "prerank.onnx"  # the two-stage model holds both scorers
RANK_ONNX_FILE = "rank.onnx"
LOOKALIKE_ADAPTER = "cascade.triton.lookalike_model"
USERS_FILE = "users.npz"  # the look-alike model's users' table (`cascade.lookalike.users.UserTable`)

PINNED_PIPELINE_VERSION = 1  # a pinned pipeline `<scorer>_pipeline_v<N>` is model version 1 of its own
TWO_STAGE = "two_stage"  # the metrics' name for the two-stage models (`two_stage_name`)
SCORERS = ("prerank", "rank")  # the served scorers; each has pipelines (raw request -> scores)

Profile = Literal["cpu", "gpu"]
"""`cpu`: each pipeline is one fused Python-backend model (feature assembly + ONNX Runtime).
`gpu`: each pipeline is an ensemble, feature_assembly (rows) -> the scorer on the GPU (TensorRT, ONNX
Runtime on CUDA, or the Python backend on torch CUDA: `Settings.gpu_scorer_backend`)."""


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


def lookalike_name(version: int) -> str:
    """`lookalike_v2`: the look-alike scorer's version 2 (the ensemble repository, like pinned pipelines)."""
    return f"lookalike_v{int(version)}"


def lookalike_version(model: str) -> int | None:
    """N when `model` is the look-alike scorer's version `lookalike_v<N>`, else None."""
    match = re.fullmatch(r"lookalike_v(\d+)", model)
    return int(match[1]) if match else None


def two_stage_name(prerank_version: int, rank_version: int) -> str:
    """`two_stage_p1_r2`: pre-rank version 1 -> top-k -> rank version 2, in one call (CPU profile)."""
    return f"two_stage_p{int(prerank_version)}_r{int(rank_version)}"


def two_stage_versions(model: str) -> tuple[int, int] | None:
    """(pre-rank version, rank version) when `model` is a two-stage model, else None."""
    match = re.fullmatch(r"two_stage_p(\d+)_r(\d+)", model)
    return (int(match[1]), int(match[2])) if match else None
