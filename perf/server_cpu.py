"""What one inference costs the server in CPU: tritonserver's and its Python-backend stubs' CPU
seconds (psutil) over the inferences Triton itself counted (its statistics API), both as deltas
over a run.

On a box where the load generator shares the cores, throughput alone hides how much of the box the
server takes; CPU per inference does not depend on what else runs (up to cache and scheduling noise).
"""
from __future__ import annotations

from dataclasses import dataclass

import psutil

from perf.stackcpu import process_cpu


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` and every live process under it (tritonserver's
    `triton_python_backend_stub`s: one per model instance)."""
    pids = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    return sum(s for s in map(process_cpu, pids) if s is not None)


def inference_count(client: object, model: str) -> int:
    """Inferences Triton has run for `model`, all versions (a `tritonclient.grpc` client)."""
    stats = client.get_inference_statistics(model)
    return sum(int(s.inference_count) for s in stats.model_stats)


@dataclass(frozen=True)
class CpuSample:
    cpu_s: float
    inferences: int


def sample(pid: int, client: object, model: str) -> CpuSample:
    return CpuSample(server_cpu_seconds(pid), inference_count(client, model))


def cpu_ms_per_inference(before: CpuSample, after: CpuSample) -> float | None:
    """Server CPU milliseconds per inference between two samples; None when nothing ran."""
    done = after.inferences - before.inferences
    return 1000.0 * (after.cpu_s - before.cpu_s) / done if done > 0 else None
