"""perf.server_cpu: a server's CPU per inference from two samples."""
from __future__ import annotations

import os

import pytest

from perf.server_cpu import CpuSample, cpu_ms_per_inference, server_cpu_seconds


def test_cpu_per_inference_is_the_ratio_of_the_deltas() -> None:
    assert cpu_ms_per_inference(CpuSample(10.0, 1_000), CpuSample(12.5, 2_000)) == pytest.approx(2.5)
    assert cpu_ms_per_inference(CpuSample(10.0, 1_000), CpuSample(11.0, 1_000)) is None  # nothing ran


def test_server_cpu_counts_the_process_and_grows_with_work() -> None:
    before = server_cpu_seconds(os.getpid())
    sum(i * i for i in range(300_000))
    assert server_cpu_seconds(os.getpid()) > before > 0
