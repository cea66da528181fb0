"""perf tooling without servers: concurrency parsing, loopback guard, perf_analyzer unpacking."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from perf.loadgen import UNKNOWN_USER_BASE, draw_users, parse_user_range
from perf.loopback import is_loopback_host, require_loopback_url
from perf.perf_analyzer import WHEEL_MEMBER, PerfAnalyzerError, extract_binary, link_libs
from perf.run_triton import parse_levels


def test_parse_levels() -> None:
    assert parse_levels("1,2,4,8") == [1, 2, 4, 8]
    assert parse_levels("8,1,1") == [1, 8]
    assert parse_levels("1:8:3") == [1, 4, 7]
    assert parse_levels("2:4") == [2, 3, 4] and parse_levels("3") == [3]
    with pytest.raises(ValueError):
        parse_levels("0,1")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]"])
def test_loopback_accepted(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("url", ["http://10.0.0.1:8080", "http://192.168.1.2", "http://example.com", "ftp://127.0.0.1/", "127.0.0.1:80"])
def test_non_loopback_refused(url: str) -> None:
    with pytest.raises(SystemExit):
        require_loopback_url(url)
    assert require_loopback_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"


def test_user_draws() -> None:
    assert parse_user_range("5:10") == (5, 10)
    ids = draw_users(np.random.default_rng(0), 4000, (5, 10), 0.25)
    unknown = ids >= UNKNOWN_USER_BASE
    assert ((ids[~unknown] >= 5) & (ids[~unknown] < 10)).all()
    assert 0.2 < unknown.mean() < 0.3


def test_extract_binary_and_links(tmp_path: Path) -> None:
    wheel = tmp_path / "tritonclient-2.51.0-py3-none-manylinux1_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(WHEEL_MEMBER, b"#!/bin/sh\necho hi\n")
    binary = extract_binary(wheel, tmp_path / "bin" / "perf_analyzer")
    assert binary.read_bytes().startswith(b"#!/bin/sh") and os.access(binary, os.X_OK)

    libs = tmp_path / "nvidia_pytriton.libs"
    libs.mkdir()
    (libs / "libb64-98cb6333.so.0d").write_bytes(b"")
    with pytest.raises(PerfAnalyzerError, match="libcudart"):
        link_libs(tmp_path / "lib", libs)
    (libs / "libcudart-09529672.so.12.6.77").write_bytes(b"")
    lib_dir = link_libs(tmp_path / "lib", libs)
    assert (lib_dir / "libb64.so.0d").resolve() == (libs / "libb64-98cb6333.so.0d").resolve()
    assert (lib_dir / "libcudart.so.12").resolve() == (libs / "libcudart-09529672.so.12.6.77").resolve()
    assert link_libs(tmp_path / "lib", libs) == lib_dir  # idempotent

    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("other", b"")
    with pytest.raises(PerfAnalyzerError):
        extract_binary(empty, tmp_path / "bin2" / "perf_analyzer")


def test_the_look_alike_bench_prints_every_stage(capsys: pytest.CaptureFixture[str]) -> None:
    from perf.bench_lookalike import main

    main(["--users", "5000", "--candidates", "200", "--seeds", "10", "--calls", "5"])
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): float(line.split("|")[3]) for line in out.splitlines() if line.startswith("| ") and "ms" not in line}
    assert set(rows) == {"query", "ann", "score", "top", "total"} and all(v > 0 for v in rows.values())
    assert rows["total"] >= rows["score"]
