"""Session fixtures shared by integration tests: a small real export, real tritonserver and redis-server."""
from __future__ import annotations

import asyncio
import traceback
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cascade.servers.process import ManagedProcess, free_port
from cascade.servers.redis import cluster_ports, start_redis, start_redis_cluster
from cascade.servers.triton import start_triton
from cascade.settings import Settings


CANCEL_WAIT_S = 10.0


@pytest.fixture(scope="session", autouse=True)
async def no_task_outlives_the_session() -> AsyncIterator[None]:
    """At the end of the session, cancel what tests left running on the shared event loop and name
    any task that ignores its cancellation. pytest-asyncio's loop teardown waits on every task with
    no limit, so one such task hangs the run after the last test has passed (seen once in CI: the
    loop woke every 0.5 s for over five minutes). A stuck task is named in a warning, with its stack, and dropped
    from the loop's task set, so the run ends and the culprit is in the log."""
    yield
    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current]
    for task in left:
        task.cancel()
    if not left:
        return
    _, stuck = await asyncio.wait(left, timeout=CANCEL_WAIT_S)
    for task in stuck:
        stack = "".join(traceback.format_list(traceback.extract_stack(task.get_stack()[-1]))) if task.get_stack() else ""
        warnings.warn(f"still running {CANCEL_WAIT_S:g} s after its cancellation at the end of the session: {task!r}\n{stack}",
                      stacklevel=1)
        asyncio.tasks._unregister_task(task)  # noqa: SLF001 - else the loop's teardown waits on it forever


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Small sizes so the export trains in seconds; every server on a free port."""
    root = tmp_path_factory.mktemp("cascade")
    return Settings(
        n_users=300, n_items=2_000, n_interactions=30_000, n_categories=12, epochs=1, distill_epochs=2, retrieval_epochs=3,
        artifacts_dir=root / "artifacts", model_repository=root / "model_repository",
        ensemble_repository=root / "ensemble", run_dir=root / "run",
        triton_http_port=free_port(), triton_grpc_port=free_port(), triton_metrics_port=free_port(),
        redis_port=free_port(), recall_ann_k=300, recall_popular_k=50, prerank_keep=100, rank_keep=30,
        distill_list_steps=30, distill_list_epochs=1, teacher_members=2,
    )


@pytest.fixture(scope="session")
def exported(settings: Settings) -> Settings:
    from export.__main__ import run_export

    run_export(settings)
    return settings


@pytest.fixture(scope="session")
def triton(exported: Settings) -> Iterator[ManagedProcess]:
    s = exported
    process = start_triton(
        [s.model_repository, s.ensemble_repository], s.run_dir, s.triton_host,
        s.triton_http_port, s.triton_grpc_port, s.triton_metrics_port,
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def redis_server(settings: Settings) -> Iterator[ManagedProcess]:
    process = start_redis(settings.redis_port, Path(settings.run_dir))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real 3-node Redis Cluster (a master per node, every slot served); yields a URL naming one node."""
    ports = cluster_ports(3)
    nodes = start_redis_cluster(ports, tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for node in nodes:
            node.stop()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-cuda", action="store_true",
        help="tests/gpu: a test that would skip (no CUDA, no GPU package) fails instead (`make gpu-smoke`)",
    )
