"""torch -> ONNX with a dynamic row dimension, checked against torch on real rows."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from cascade.features import as_rows
from cascade.specs import USER_ROW, USER_SIDE, ModelSpec
from cascade.triton.sessions import cpu_session

PARITY_TOLERANCE = 1e-4
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)


class ParityError(RuntimeError):
    pass


def _feed(spec: ModelSpec, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`sample`, row tensors, as the spec's inputs (a request-shaped scorer's `user_row` added)."""
    return as_rows(sample) if USER_ROW in spec.inputs else sample


def export_onnx(model: torch.nn.Module, spec: ModelSpec, sample: dict[str, np.ndarray], path: Path) -> None:
    """Export `model` with the spec's input/output names and dynamic leading dimensions: one for
    the rows, and for a request-shaped scorer (`cascade.specs.USER_ROW`) one for its user side.
    `sample` holds row tensors (every row its own user side)."""
    model.eval()
    feed = _feed(spec, sample)
    args = tuple(torch.from_numpy(feed[name]) for name in spec.input_names)
    rows = torch.export.Dim("rows", min=1, max=1 << 20)
    users = torch.export.Dim("users", min=1, max=1 << 20) if USER_ROW in spec.inputs else rows
    dynamic_shapes = tuple({0: users if t.name in USER_SIDE else rows} for t in spec.inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_shapes=dynamic_shapes,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """The CPU session serving uses (`cascade.triton.sessions.cpu_session`), for checks and evaluation."""
    return cpu_session(path, threads)


@torch.no_grad()
def check_parity(model: torch.nn.Module, spec: ModelSpec, sample: dict[str, np.ndarray], path: Path) -> float:
    """Max abs difference between torch, every row on its own, and ONNX Runtime on `sample` (row
    tensors); raises above tolerance."""
    expected = model(*[torch.from_numpy(sample[t.name]) for t in spec.inputs if t != USER_ROW]).numpy()
    feed = _feed(spec, sample)
    got = session(path).run(spec.output_names, {n: feed[n] for n in spec.input_names})[0]
    if got.shape != expected.shape:
        raise ParityError(f"{spec.name}: ONNX output shape {got.shape} != torch {expected.shape}")
    diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    if diff > PARITY_TOLERANCE:
        raise ParityError(f"{spec.name}: ONNX vs torch max abs diff {diff:.3g} > {PARITY_TOLERANCE}")
    return diff
