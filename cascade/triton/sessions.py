"""ONNX Runtime sessions as the CPU profile serves them."""
from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def cpu_session(path: Path, intra_op_threads: int = 1) -> ort.InferenceSession:
    """A CPU session with `intra_op_threads` threads per run and no inter-op pool: Triton runs one
    model instance per stub process, and more threads than cores only contend on a small box."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
