"""The request path's Redis client, pure parts: the wire format and the URLs it speaks."""
from __future__ import annotations

import hiredis

from orchestrator.clients.resp import Endpoint, pack


def test_pack_is_resp_arrays_of_bulk_strings_that_parse_back() -> None:
    wire = pack([("ZADD", "k", 1.5, 7), ("LRANGE", b"q", 0, -1)])
    assert wire.startswith(b"*4\r\n$4\r\nZADD\r\n$1\r\nk\r\n$3\r\n1.5\r\n$1\r\n7\r\n*4\r\n$6\r\nLRANGE\r\n")
    reader = hiredis.Reader()
    reader.feed(wire)
    assert reader.gets() == [b"ZADD", b"k", b"1.5", b"7"] and reader.gets() == [b"LRANGE", b"q", b"0", b"-1"]


def test_endpoints_of_plain_redis_and_unix_socket_urls_only() -> None:
    assert Endpoint.of("redis://127.0.0.1:6390/0") == Endpoint("127.0.0.1", 6390, 0, None, None)
    assert Endpoint.of("redis://:s%40cret@cache.internal/3") == Endpoint("cache.internal", 6379, 3, None, "s@cret")
    assert Endpoint.of("redis://app:pw@h:1") == Endpoint("h", 1, 0, "app", "pw")
    assert Endpoint.of("rediss://h:6380/0") is None  # TLS: redis-py's client serves it (RedisPyBatches)
    assert Endpoint.of("unix:///tmp/redis.sock") == Endpoint("/tmp/redis.sock", None, 0, None, None)
    assert Endpoint.of("unix:///run/r.sock?db=2&password=s%40cret") == Endpoint("/run/r.sock", None, 2, None, "s@cret")
    assert str(Endpoint.of("unix:///tmp/redis.sock")) == "/tmp/redis.sock" and str(Endpoint.of("redis://h:1")) == "h:1"
