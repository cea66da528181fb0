"""ONNX Runtime sessions as the CPU profile serves them."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort


class Session(ort.InferenceSession):
    """An InferenceSession that holds the arrays behind its overridden initializers: ONNX Runtime
    reads them where they lie and the OrtValue does not keep them alive (a freed one: SIGSEGV)."""

    held: tuple[dict[str, np.ndarray], dict[str, ort.OrtValue]]


def cpu_session(
    path: Path, intra_op_threads: int = 1, initializers: Mapping[str, np.ndarray] | None = None,
) -> ort.InferenceSession:
    """A CPU session with `intra_op_threads` threads per run and no inter-op pool: Triton runs one
    model instance per stub process, and more threads than cores only contend on a small box.

    `initializers` replace the graph's initializers of those names (e.g. the rank graph's head
    weights, `cascade.heads`); a name the graph does not hold changes nothing."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    arrays = {name: np.ascontiguousarray(a) for name, a in (initializers or {}).items()}
    values = {name: ort.OrtValue.ortvalue_from_numpy(a) for name, a in arrays.items()}
    for name, value in values.items():
        options.add_initializer(name, value)
    session = Session(str(path), options, providers=["CPUExecutionProvider"])
    session.held = (arrays, values)
    return session
