"""Run the real tritonserver shipped in the nvidia-pytriton wheel (CPU machines).

The wheel's server only has the Python backend. We lay out a backend directory holding the
backend library, its utils module and the stub for this Python version, put the wheel's
library folder on LD_LIBRARY_PATH, and put this environment's `bin` first on PATH: the stub's
embedded Python runs isolated (PYTHONPATH ignored) and takes its site-packages from the first
`python3` on PATH.
"""
from __future__ import annotations

import os
import shutil
import sys
import urllib.request
import uuid
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from cascade.servers.process import ManagedProcess, ServerError


@dataclass(frozen=True)
class TritonInstall:
    server: Path
    libs: Path
    backend_dir: Path


def locate_pytriton(work_dir: Path) -> TritonInstall:
    spec = find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("nvidia-pytriton is not installed: `pip install nvidia-pytriton==0.7.0` provides tritonserver")
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    libs = root.parent.parent / "nvidia_pytriton.libs"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    sources = [root / "backends" / "python" / "libtriton_python.so", root / "backends" / "python" / "triton_python_backend_utils.py", stub]
    for path in [root / "bin" / "tritonserver", libs, *sources]:
        if not path.exists():
            raise ServerError(f"expected {path} from the nvidia-pytriton wheel; reinstall it")
    backend_dir = work_dir / "backends"
    python_dir = backend_dir / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for src in sources:
        dst = python_dir / src.name
        if not dst.exists() or dst.stat().st_size != src.stat().st_size:
            shutil.copy2(src, dst)
    return TritonInstall(root / "bin" / "tritonserver", libs, backend_dir)


def triton_env(install: TritonInstall) -> dict[str, str]:
    env = dict(os.environ)
    env_bin = str(Path(sys.executable).parent)
    env["PATH"] = f"{env_bin}{os.pathsep}{env.get('PATH', '')}"
    python_lib = str(Path(sys.base_prefix) / "lib")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (python_lib, str(install.libs), env.get("LD_LIBRARY_PATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def triton_argv(
    install: TritonInstall, repositories: list[Path], host: str, http_port: int, grpc_port: int, metrics_port: int
) -> list[str]:
    argv = [str(install.server)]
    argv += [f"--model-repository={p.resolve()}" for p in repositories]
    argv += [
        f"--backend-directory={install.backend_dir.resolve()}",
        "--model-control-mode=explicit",
        "--load-model=*",
        f"--http-address={host}",
        f"--grpc-address={host}",
        f"--metrics-address={host}",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        f"--metrics-port={metrics_port}",
        "--allow-gpu-metrics=false",
        "--strict-readiness=true",
        "--pinned-memory-pool-byte-size=0",
        "--exit-timeout-secs=10",
        # A prefix of its own per start for the Python backend's shared-memory regions: a server killed
        # with SIGKILL leaves its regions in /dev/shm, locked, and a restart that met them under the
        # default prefix aborted (boost::interprocess::lock_exception, seen once in the Triton-kill test).
        f"--backend-config=python,shm-region-prefix-name=cascade_{uuid.uuid4().hex[:12]}_",
    ]
    return argv


def triton_ready(host: str, http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{http_port}/v2/health/ready", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def start_triton(
    repositories: list[Path],
    work_dir: Path,
    host: str = "127.0.0.1",
    http_port: int = 8000,
    grpc_port: int = 8001,
    metrics_port: int = 8002,
    timeout_s: float = 120.0,
) -> ManagedProcess:
    """Start tritonserver on `repositories` and return once every model is ready."""
    for repo in repositories:
        if not repo.is_dir() or not any(repo.iterdir()):
            raise ServerError(f"model repository {repo} is missing or empty: run the export first")
    install = locate_pytriton(work_dir)
    argv = triton_argv(install, repositories, host, http_port, grpc_port, metrics_port)
    process = ManagedProcess("tritonserver", argv, work_dir / "tritonserver.log", triton_env(install))
    process.wait_ready(lambda: triton_ready(host, http_port), timeout_s)
    return process
