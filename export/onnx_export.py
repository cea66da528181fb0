"""torch -> ONNX with a dynamic row dimension, checked against torch on real rows."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from cascade.features import as_rows
from cascade.specs import USER_ROW, USER_SIDE, ModelSpec, triton_scorer
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
    feed = _feed(spec, sample)
    args = tuple(torch.from_numpy(feed[name]) for name in spec.input_names)
    rows = torch.export.Dim("rows", min=1, max=1 << 20)
    users = torch.export.Dim("users", min=1, max=1 << 20) if USER_ROW in spec.inputs else rows
    dynamic_shapes = tuple({0: users if t.name in USER_SIDE else rows} for t in spec.inputs)
    write_onnx(model, args, path, spec.input_names, spec.output_names, dynamic_shapes)


def write_onnx(model: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
               output_names: list[str], dynamic_shapes: tuple[dict, ...]) -> None:
    """`model` (in eval mode) as one self-contained ONNX file, through the dynamo exporter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), args, str(path), input_names=input_names, output_names=output_names,
            dynamic_shapes=dynamic_shapes, dynamo=True, external_data=False, verbose=False,
        )


def session(path: Path, threads: int = 1, initializers: dict[str, np.ndarray] | None = None) -> ort.InferenceSession:
    """The CPU session serving uses (`cascade.triton.sessions.cpu_session`), for checks and evaluation."""
    return cpu_session(path, threads, initializers)


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


# --- the GPU profile's graphs: one row per candidate ----------------------------------------------
ROW_PARITY_TOLERANCE = 1e-5


def row_graph_path(onnx_dir: Path, name: str, suffix: str = ".onnx") -> Path:
    """`onnx/rank.rows.onnx` (ONNX, for TensorRT and onnxruntime_onnx) or `onnx/rank.rows.pt2`
    (a torch.export program, for the Python backend's torch scorer): the GPU profile's graphs."""
    return onnx_dir / f"{name}.rows{suffix}"


def export_row_graphs(model: torch.nn.Module, spec: ModelSpec, sample: dict[str, np.ndarray], onnx_dir: Path) -> tuple[Path, Path]:
    """The scorer as native backends take it: every input one row per candidate, the user side
    repeated on each row (feature assembly broadcasts it), one dynamic row axis, no `user_row` and
    no data-dependent op (the training function, `cascade.models.base`). Written as ONNX and as a
    torch.export program; returns their paths."""
    rows = triton_scorer(spec)
    onnx_path = row_graph_path(onnx_dir, spec.name)
    export_onnx(model, rows, sample, onnx_path)
    args = tuple(torch.from_numpy(sample[name]) for name in rows.input_names)
    dim = torch.export.Dim("rows", min=1, max=1 << 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model.eval(), args, dynamic_shapes=tuple({0: dim} for _ in rows.inputs))
    program_path = row_graph_path(onnx_dir, spec.name, ".pt2")
    torch.export.save(program, str(program_path))
    return onnx_path, program_path


def one_user_feeds(sample: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A served request, the first row's user against every row's item: as the row graph takes it
    (the user side repeated) and as the request-shaped graph does (the user side once, `user_row` 0)."""
    n = len(sample["item_id"])
    rows = {name: np.repeat(t[:1], n, axis=0) if name in USER_SIDE else t for name, t in sample.items()}
    request = {name: t[:1] if name in USER_SIDE else t for name, t in sample.items()}
    return rows, {**request, USER_ROW.name: np.zeros(n, np.int64)}


def check_row_parity(spec: ModelSpec, sample: dict[str, np.ndarray], request_path: Path, rows_path: Path) -> float:
    """Max abs difference, on CPU ONNX Runtime, between the GPU profile's row graph and the CPU
    profile's request-shaped graph (`spec`), over `sample`'s rows (each its own user) and over one
    user's request against all of `sample`'s items; raises above ROW_PARITY_TOLERANCE."""
    rows = triton_scorer(spec)
    request_session, rows_session = session(request_path), session(rows_path)
    diff = 0.0
    for row_feed, request_feed in ((sample, as_rows(sample)), one_user_feeds(sample)):
        expected = request_session.run(spec.output_names, {n: request_feed[n] for n in spec.input_names})[0]
        got = rows_session.run(rows.output_names, {n: row_feed[n] for n in rows.input_names})[0]
        if got.shape != expected.shape:
            raise ParityError(f"{spec.name}: row graph output shape {got.shape} != request graph {expected.shape}")
        diff = max(diff, float(np.max(np.abs(got - expected))) if expected.size else 0.0)
    if diff > ROW_PARITY_TOLERANCE:
        raise ParityError(f"{spec.name}: row graph vs request graph max abs diff {diff:.3g} > {ROW_PARITY_TOLERANCE}")
    return diff
