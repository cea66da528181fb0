"""The request path's Redis client against a real redis-server: the same replies as redis-py,
concurrent batches on one connection, refusals, timeouts and a restarted server."""
from __future__ import annotations

import asyncio
from unittest.mock import ANY
from pathlib import Path

import pytest
import redis.asyncio as redis

from cascade.servers.process import free_port
from cascade.servers.redis import start_redis, unix_socket_url
from orchestrator.clients.errors import BackendTimeout, BackendUnavailable
from orchestrator.clients.resp import Endpoint, RedisPyBatches, RespBatches, batches_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def server(tmp_path: Path):
    port = free_port()
    process = await asyncio.to_thread(start_redis, port, tmp_path)
    try:
        yield port, process
    finally:
        await asyncio.to_thread(process.stop)


BATCH = [
    ("ZADD", "z", "1.5", 3, "2.5", 4), ("ZRANGE", "z", 0, -1), ("ZREMRANGEBYSCORE", "z", "-inf", "(2"),
    ("LPUSH", "q", 7, 8), ("LRANGE", "q", 0, -1), ("EXPIRE", "z", 60),
    ("XADD", "s", "MAXLEN", "~", 100, "*", "meta", b"\x00\x01raw"), ("XLEN", "s"),
]


async def test_replies_are_redis_pys_and_concurrent_batches_get_their_own(server) -> None:
    port, _ = server
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.from_url(url)
    fast = batches_for(url, client)
    assert isinstance(fast, RespBatches)
    ours = await fast.execute(BATCH)
    await client.flushdb()
    theirs = await RedisPyBatches(client).execute(BATCH)
    xadd_id = 6
    assert ours[:xadd_id] + ours[xadd_id + 1:] == theirs[:xadd_id] + theirs[xadd_id + 1:]
    assert ours[1] == [b"3", b"4"] and ours[4] == [b"8", b"7"]

    async def one(n: int) -> list:
        return await fast.execute([("SET", f"k{n}", n), ("GET", f"k{n}"), ("INCRBY", f"k{n}", n)])

    results = await asyncio.gather(*(one(n) for n in range(200)))
    assert all(r == [b"OK", str(n).encode(), 2 * n] for n, r in enumerate(results))
    await fast.close()
    await client.aclose()


async def test_a_refused_command_raises_and_the_connection_stays_usable(server) -> None:
    port, _ = server
    fast = RespBatches(Endpoint("127.0.0.1", port, 0, None, None))
    with pytest.raises(RuntimeError, match="redis refused a command: WRONGTYPE"):
        await fast.execute([("SET", "x", 1), ("LPUSH", "x", 2)])
    assert await fast.execute([("GET", "x")]) == [b"1"]
    await fast.close()


async def test_a_timed_out_batch_leaves_its_replies_to_nobody(server) -> None:
    port, _ = server
    fast = RespBatches(Endpoint("127.0.0.1", port, 0, None, None), timeout_s=0.1)
    with pytest.raises(BackendTimeout, match="no answer within 0.1 s"):
        await fast.execute([("BLPOP", "empty", 0.3)])  # Redis answers after 0.3 s
    await asyncio.sleep(0.35)  # one connection: batches behind a slow one wait for it
    assert await fast.execute([("ECHO", "mine")]) == [b"mine"]  # not the late BLPOP's nil
    await fast.close()


async def test_down_is_unavailable_and_a_restarted_server_is_used_again(server, tmp_path: Path) -> None:
    port, process = server
    fast = RespBatches(Endpoint("127.0.0.1", port, 0, None, None), timeout_s=0.5)
    assert await fast.execute([("PING",)]) == [b"PONG"]
    await asyncio.to_thread(process.stop)
    for _ in range(2):  # the lost connection, then a refused one
        with pytest.raises(BackendUnavailable):
            await fast.execute([("PING",)])
    restarted = await asyncio.to_thread(start_redis, port, tmp_path)
    try:
        assert await fast.execute([("PING",)]) == [b"PONG"]
    finally:
        await fast.close()
        await asyncio.to_thread(restarted.stop)


async def test_a_password_and_a_database_are_set_on_connect(tmp_path: Path) -> None:
    port = free_port()
    process = await asyncio.to_thread(start_redis, port, tmp_path)
    try:
        admin = redis.from_url(f"redis://127.0.0.1:{port}/0")
        await admin.config_set("requirepass", "s3cret")
        fast = batches_for(f"redis://:s3cret@127.0.0.1:{port}/2", admin)
        assert await fast.execute([("SET", "k", "v")]) == [b"OK"]
        info = (await fast.execute([("CLIENT", "INFO")]))[0].decode()
        assert " db=2 " in info
        wrong = batches_for(f"redis://:nope@127.0.0.1:{port}/0", admin)
        with pytest.raises(BackendUnavailable, match="WRONGPASS|invalid password"):
            await wrong.execute([("PING",)])
        await fast.close()
    finally:
        await asyncio.to_thread(process.stop)


async def test_a_unix_socket_url_is_spoken_directly_and_reaches_the_same_server(tmp_path: Path) -> None:
    port, socket = free_port(), tmp_path / "redis.sock"
    process = await asyncio.to_thread(start_redis, port, tmp_path, unix_socket=socket)
    try:
        url = unix_socket_url(socket)
        assert url is not None
        client = redis.from_url(url)  # redis-py reads the same URL: the other Redis users of the orchestrator
        fast = batches_for(url.replace("db=0", "db=3"), client)
        assert isinstance(fast, RespBatches)
        assert await fast.execute([("SET", "k", "over the socket"), ("CLIENT", "INFO")]) == [b"OK", ANY]
        over_tcp = redis.from_url(f"redis://127.0.0.1:{port}/3")
        assert await over_tcp.get("k") == b"over the socket"
        await fast.close()
        await client.aclose()
        await over_tcp.aclose()
    finally:
        await asyncio.to_thread(process.stop)
    assert unix_socket_url(tmp_path / ("x" * 120)) is None  # too long for a socket address: stay on TCP
