"""`make gpu-smoke` without CUDA: both its steps fail (never skip), saying why."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from perf import gpu_smoke

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the GPU check runs for real")


def test_the_smoke_script_fails_without_cuda(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert gpu_smoke.main(["--out", str(tmp_path / "smoke.json"), "--work", str(tmp_path)]) == 1
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "smoke.json").exists() and not (tmp_path / "artifacts").exists()  # stopped before any work


def test_gpu_tests_fail_instead_of_skipping_under_require_cuda() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "tests/gpu", "-p", "no:cacheprovider", "--require-cuda"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert run.returncode != 0 and "no CUDA device under --require-cuda" in run.stdout
    assert " skipped" not in run.stdout.splitlines()[-1]
