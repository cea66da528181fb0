"""`--require-cuda` (`make gpu-smoke`): without a CUDA device every GPU test that skips fails, so a
machine without CUDA can never pass the GPU check by skipping it. With CUDA, a test may still skip
for an optional backend the machine lacks (faiss-gpu, ONNX Runtime's CUDA provider): the torch paths
are the ones every CUDA machine has, and those tests do not skip there."""
from __future__ import annotations

from functools import cache

import pytest


@cache
def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.config.getoption("--require-cuda") and not cuda_available():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"no CUDA device under --require-cuda (would have skipped: {reason})"
