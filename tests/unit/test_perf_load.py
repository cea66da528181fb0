"""Load tooling (perf.wrk, perf.loadgen, perf.rawhttp, perf.openloop, perf.stackcpu, perf.loadtable).

Pure parts with hand-made inputs; the raw client against a real asyncio HTTP server on 127.0.0.1
started here; process discovery against a process started here.
"""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import psutil
import pytest

from perf import openloop
from perf.loadgen import Target, closed_loop, open_connections, open_loop
from perf.loadtable import LevelResult, format_load_table, to_levels_csv
from perf.rawhttp import Outcome, build_request, classify_answer
from perf.stackcpu import (
    CpuSample, LevelCpu, StackProcess, busy_share, cascade_settings, classify, discover, level_cpu, per_answer_ms,
    process_cpu, stub_model, unique_names,
)
from perf.wrk import LOOKALIKE_SCRIPT, SCRIPT, lookalike_target, parse_time_ms, parse_wrk_output, wrk_argv

# ---- wrk output ----------------------------------------------------------------------------

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8080/v1/recommend
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    28.61ms    9.12ms 151.20ms   81.02%
    Req/Sec   140.12     21.07   190.00     70.00%
  Latency Distribution
     50%  850.00us
     75%   31.02ms
     90%   38.50ms
     99%    1.20s
  1402 requests in 10.01s, 2.91MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 40
Requests/sec:    140.06
Transfer/sec:    297.85KB
COUNTS ok=1360 shed=38 non200=2 degraded=17 ranked=1290 rps=140.1 p99_ms=1200.00
"""


def test_parse_wrk_output() -> None:
    run = parse_wrk_output(WRK_OUTPUT)
    assert (run.ok, run.shed, run.non200, run.degraded, run.ranked) == (1360, 38, 2, 17, 1290)
    assert run.rps_all == 140.1 and run.requests == 1402 and run.duration_s == pytest.approx(10.01)
    assert run.percentiles_ms == pytest.approx({50: 0.85, 75: 31.02, 90: 38.5, 99: 1200.0})
    assert run.socket_errors == {"connect": 0, "read": 2, "write": 0, "timeout": 3}


def test_parse_wrk_output_without_socket_errors_or_parts() -> None:
    clean = "\n".join(line for line in WRK_OUTPUT.splitlines() if "Socket errors" not in line)
    assert sum(parse_wrk_output(clean).socket_errors.values()) == 0
    with pytest.raises(ValueError, match="COUNTS"):
        parse_wrk_output(WRK_OUTPUT.replace("COUNTS", "TOTALS"))
    with pytest.raises(ValueError, match="--latency"):
        parse_wrk_output(WRK_OUTPUT.replace("Latency Distribution", ""))


def test_parse_time_units() -> None:
    assert parse_time_ms("127.00us") == pytest.approx(0.127)
    assert parse_time_ms("2.23ms") == 2.23 and parse_time_ms("10.00s") == 10_000 and parse_time_ms("1.50m") == 90_000
    with pytest.raises(ValueError):
        parse_time_ms("3 parsecs")


def test_wrk_argv_caps_threads_and_uses_count_lua() -> None:
    argv = wrk_argv("/usr/bin/wrk", "http://127.0.0.1:8080", 1, 10, 2, 2.0)
    assert argv == ["/usr/bin/wrk", "-t1", "-c1", "-d10s", "--timeout=2s", "--latency", "-s", str(SCRIPT),
                    "http://127.0.0.1:8080/v1/recommend"]
    assert "-t2" in wrk_argv("wrk", "http://127.0.0.1:8080", 16, 10, 2, 2.0)
    assert 'COUNTS ok=%d shed=%d' in SCRIPT.read_text()


def test_the_lookalike_target_passes_its_script_arguments_after_a_double_dash() -> None:
    target = lookalike_target(100_000, 100, 0.5, [(40.1, -73.25), (-33.5, 151.0)])
    argv = wrk_argv("wrk", "http://127.0.0.1:8080", 4, 10, 1, 2.0, target)
    assert argv[-7:] == [str(LOOKALIKE_SCRIPT), "http://127.0.0.1:8080/v1/lookalike", "--", "100000", "100", "0.5",
                         "40.10000,-73.25000;-33.50000,151.00000"]
    script = LOOKALIKE_SCRIPT.read_text()  # count.lua's counting and COUNTS line, a model-scored answer counted as ranked
    assert '"count.lua")' in script and 'COUNTS ok=%d shed=%d' in SCRIPT.read_text() and '"scored_by":"model"' in script


# ---- stack CPU -----------------------------------------------------------------------------

def test_classify_processes() -> None:
    assert classify("python", ["/v/bin/python", "-m", "uvicorn", "--factory", "orchestrator.app:create_app"]) == "orchestrator"
    assert classify("granian", ["/v/bin/granian", "--interface", "asgi", "orchestrator.app:app"]) == "orchestrator"
    assert classify("python", ["python", "-m", "orchestrator.stack", "up"]) is None
    assert classify("python", ["python", "-m", "pytest", "tests/unit/test_orchestrator_errors.py"]) is None
    assert classify("tritonserver", ["/x/bin/tritonserver", "--model-repository=/m"]) == "tritonserver"
    assert classify("redis-server", ["/x/bin/redis-server 127.0.0.1:6379"]) == "redis-server"
    stub = ["/b/python/triton_python_backend_stub", "/repo/model_repository/prerank/3/model.py",
            "triton_python_backend_shm_region_1", "1048576", "1048576", "42", "/b/python", "336", "prerank_0_0", "DEFAULT"]
    assert classify("triton_python_b", stub) == "stub:prerank"
    assert stub_model(["stub", "shm", "1"]) == "unknown"
    assert unique_names(["orchestrator", "orchestrator", "stub:rank", "stub:rank", "tritonserver"]) == \
        ["orchestrator", "orchestrator", "stub:rank", "stub:rank#2", "tritonserver"]


def test_cpu_delta_arithmetic() -> None:
    orch1, orch2, triton = StackProcess("orchestrator", 10), StackProcess("orchestrator", 11), StackProcess("tritonserver", 20)
    stub, gone = StackProcess("stub:rank", 21), StackProcess("redis-server", 30)
    before = CpuSample(100.0, {orch1: 5.0, orch2: 1.0, triton: 7.0, stub: 2.0, gone: 1.0},
                       {"user": 100.0, "system": 20.0, "idle": 70.0, "iowait": 10.0, "guest": 50.0}, 3.0)
    after = CpuSample(110.0, {orch1: 9.0, orch2: 2.5, triton: 10.0, stub: 2.5},
                      {"user": 110.0, "system": 25.0, "idle": 72.0, "iowait": 13.0, "guest": 60.0}, 4.5)
    cpu = level_cpu(before, after, n_cpus=2)
    assert cpu.wall_s == 10.0 and cpu.generator_s == 1.5
    assert cpu.processes_s == {"orchestrator": 5.5, "tritonserver": 3.0, "stub:rank": 0.5}  # workers summed
    assert cpu.stack_s == 9.0 and cpu.vanished == ["redis-server"]
    assert cpu.machine_busy == pytest.approx(15 / 20)  # guest is inside user already
    assert cpu.other_s == pytest.approx(0.75 * 2 * 10 - 9.0 - 1.5)
    assert per_answer_ms({"stack": 9.0, "generator": 1.5}, 1000) == {"stack": 9.0, "generator": 1.5}
    assert per_answer_ms({"stack": 9.0}, 0) == {"stack": None}
    assert cpu.as_dict(1000)["ms_per_answer"]["orchestrator"] == pytest.approx(5.5)
    with pytest.raises(ValueError, match="backwards"):
        level_cpu(after, before, 2)
    assert busy_share(before.machine, before.machine) == 0.0


def test_cascade_settings_masks_secrets() -> None:
    env = {"CASCADE_ADMIN_TOKEN": "hunter2", "CASCADE_REDIS_PASSWORD": "p", "CASCADE_PORT": "8080", "PATH": "/bin",
           "CASCADE_API_SECRET_KEY": "s"}
    assert cascade_settings(env) == {"CASCADE_ADMIN_TOKEN": "***", "CASCADE_API_SECRET_KEY": "***",
                                     "CASCADE_PORT": "8080", "CASCADE_REDIS_PASSWORD": "***"}


def test_discover_finds_orchestrator_and_its_workers() -> None:
    code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(20)']); "
            "time.sleep(20)")
    parent = subprocess.Popen([sys.executable, "-c", code, "uvicorn", "orchestrator.app:create_app"])
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(parent.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker = psutil.Process(parent.pid).children()[0].pid
        found = {p.pid: p.name for p in discover()}
        assert found[parent.pid] == found[worker] == "orchestrator"
        assert {p.pid for p in discover([parent.pid])} >= {parent.pid, worker}
        assert process_cpu(parent.pid) is not None and process_cpu(2**22 + 12345) is None
    finally:
        for child in psutil.Process(parent.pid).children():
            child.kill()
        parent.kill()
        parent.wait()


# ---- open-loop arithmetic --------------------------------------------------------------------

def test_open_loop_schedule() -> None:
    assert openloop.schedule_size(200, 10) == 2000 and openloop.schedule_size(3, 0.5) == 2
    assert [openloop.intended_ns(1_000, i, 400) for i in range(4)] == [1_000, 2_501_000, 5_001_000, 7_501_000]
    with pytest.raises(ValueError):
        openloop.schedule_size(0, 1)


def test_latency_counts_from_the_due_time() -> None:
    due, started, done = 10_000_000, 35_000_000, 47_500_000  # waited 25 ms for a connection, served in 12.5 ms
    assert openloop.latency_us(openloop.latency_origin(due, started), done) == 37_500
    assert openloop.is_late(due, started) and not openloop.is_late(due, due + 1_000_000)
    assert openloop.latency_origin(due, due - 300_000) == due - 300_000  # an early timer: timed from the real send
    with pytest.raises(ValueError):
        openloop.latency_us(done, due)
    assert openloop.achieved_rate(101, 0, 1_000_000_000) == 100.0 and openloop.achieved_rate(1, 5, 5) == 0.0


# ---- raw HTTP client -------------------------------------------------------------------------

def test_request_bytes() -> None:
    assert build_request("127.0.0.1:8080", "/v1/recommend", b'{"user_id": 1}') == (
        b"POST /v1/recommend HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
        b"Content-Length: 14\r\n\r\n{\"user_id\": 1}")


def test_classify_answers() -> None:
    body = lambda scored, degraded: json.dumps({"items": [], "scored_by": scored, "degraded": degraded}).encode()  # noqa: E731
    full = classify_answer(200, body("rank", []))
    assert full.outcome is Outcome.OK and full.ranked and not full.degraded
    skipped = classify_answer(200, body("prerank", [{"stage": "rank", "reason": "timeout"}]))
    assert skipped.outcome is Outcome.OK and skipped.degraded and not skipped.ranked
    assert classify_answer(200, body("none", [])).ranked is False
    assert classify_answer(503, b"{}").outcome is Outcome.SHED
    assert classify_answer(404, b"{}").outcome is Outcome.OTHER and classify_answer(200, b"<html>").outcome is Outcome.OTHER


# ---- the raw client against a real server -----------------------------------------------------

@dataclass
class FakeOrchestrator:
    """Answers by user id: %5==0 -> 503 (Retry-After), %7==6 -> 404, else 200 with
    degraded non-empty when %3==0 and scored_by rank when even. Closes the connection after every
    `close_every`-th answer, and waits `delay_s` before each answer."""

    delay_s: float = 0.0
    close_every: int = 0
    served: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length:\s*(\d+)", head, re.I).group(1))
                user = json.loads(await reader.readexactly(length))["user_id"]
                await asyncio.sleep(self.delay_s)
                self.served += 1
                close = bool(self.close_every) and self.served % self.close_every == 0
                writer.write(self.answer(user, close))
                await writer.drain()
                if close:
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    @staticmethod
    def answer(user: int, close: bool) -> bytes:
        extra = "Connection: close\r\n" if close else ""
        if user % 5 == 0:
            return f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n{extra}Content-Length: 2\r\n\r\n{{}}".encode()
        if user % 7 == 6:
            return f"HTTP/1.1 404 Not Found\r\n{extra}Content-Length: 2\r\n\r\n{{}}".encode()
        degraded = [{"stage": "rank", "reason": "deadline"}] if user % 3 == 0 else []
        body = json.dumps({"items": [], "scored_by": "rank" if user % 2 == 0 else "prerank", "degraded": degraded})
        return f"HTTP/1.1 200 OK\r\n{extra}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()


@pytest.fixture()
async def serve() -> AsyncIterator:
    servers = []

    async def start(fake: FakeOrchestrator) -> Target:
        server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
        servers.append(server)
        return Target("127.0.0.1", server.sockets[0].getsockname()[1], k=10)

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def expected_counts(users: range) -> dict[str, int]:
    ok = [u for u in users if u % 5 and u % 7 != 6]
    return {"ok": len(ok), "shed": sum(u % 5 == 0 for u in users),
            "other": sum(u % 5 != 0 and u % 7 == 6 for u in users),
            "degraded": sum(u % 3 == 0 for u in ok), "ranked": sum(u % 2 == 0 for u in ok)}


def counts(tally) -> dict[str, int]:
    return {"ok": tally.outcomes[Outcome.OK], "shed": tally.outcomes[Outcome.SHED],
            "other": tally.outcomes[Outcome.OTHER], "degraded": tally.degraded, "ranked": tally.ranked}


async def test_closed_loop_counts_every_answer(serve) -> None:
    target = await serve(FakeOrchestrator(close_every=7))
    users = range(70)
    conns = await open_connections(target, 3)
    tally = await closed_loop(target, conns, iter(users), duration_s=10, max_requests=len(users), timeout_s=5)
    assert counts(tally) == expected_counts(users) and not tally.errors and tally.sent == 70
    assert len(tally.latencies_us) == len(tally.recv_us) == tally.outcomes[Outcome.OK] and len(tally.send_us) == 70


async def test_open_loop_counts_and_rate(serve) -> None:
    target = await serve(FakeOrchestrator())
    users = range(40)
    tally = await open_loop(target, await open_connections(target, 4), iter(users), rate=400, n=40, timeout_s=5)
    assert counts(tally) == expected_counts(users) and not tally.errors
    # It kept the schedule, or says it did not: on a busy machine requests start late, and are counted.
    assert openloop.achieved_rate(tally.sent, tally.first_start_ns, tally.last_start_ns) > 200 or tally.late > 0


async def test_open_loop_does_not_hide_queueing(serve) -> None:
    """One connection, a 50 ms server, requests due every 10 ms: request i waits for the ones
    before it, so its latency from the due time is ~50 + 40*i ms. Timed from the send, every
    request would look like 50 ms (coordinated omission)."""
    target = await serve(FakeOrchestrator(delay_s=0.05))
    users = [1, 2, 4, 8, 11]  # all answered 200
    tally = await open_loop(target, await open_connections(target, 1), iter(users), rate=100, n=5, timeout_s=5)
    assert tally.outcomes[Outcome.OK] == 5 and tally.late >= 4
    assert max(tally.latencies_us) >= 200_000 and min(tally.latencies_us) >= 50_000


async def test_open_loop_counts_requests_that_never_start(serve) -> None:
    """One connection, a server slower than the 0.2 s timeout, 4 requests due within 0.1 s: the
    level gives up at 0.1 + 0.2 s, so requests 0 and 1 (started at 0 and 0.2 s) time out and the
    last two, which get the connection at 0.4 s, are not sent but counted."""
    target = await serve(FakeOrchestrator(delay_s=0.5))
    tally = await open_loop(target, await open_connections(target, 1), iter([1, 2, 4, 8]), rate=40, n=4, timeout_s=0.2)
    assert tally.errors == {"TimeoutError": 2, "not started": 2} and tally.sent == 2 and not tally.outcomes


# ---- table -------------------------------------------------------------------------------------

def test_load_table() -> None:
    cpu = LevelCpu(2.0, {"stub:rank": 0.2, "tritonserver": 0.3, "orchestrator": 0.5}, 0.1, 0.75, 2)
    full = LevelResult(4, 2.0, 100, 5, 1, 2, 10, 90, 1.234, 2.5, 10.0, cpu)
    idle = LevelResult(1, 2.0, 0, 3, 0, 0, 0, 0, None, None, None, LevelCpu(2.0, {"orchestrator": 0.1}, 0.0, 0.1, 2))
    lines = format_load_table([full, idle]).splitlines()
    assert lines[0] == ("| concurrency | req/s | p50 ms | p90 ms | p99 ms | shed | non-2xx | errors | degraded % | "
                        "ranked % | stack CPU ms/ans | orchestrator ms/ans | tritonserver ms/ans | stub:rank ms/ans | "
                        "generator ms/ans | machine CPU % |")
    assert lines[2] == "| 1 | 0.0 | – | – | – | 3 | 0 | 0 | – | – | – | – | – | – | – | 10.0 |"
    assert lines[3] == "| 4 | 50.0 | 1.23 | 2.50 | 10.00 | 5 | 1 | 2 | 10.0 | 90.0 | 10.00 | 5.00 | 3.00 | 2.00 | 1.00 | 75.0 |"
    csv_lines = to_levels_csv([full], "rate").splitlines()
    assert csv_lines[0].startswith("rate,req/s,") and csv_lines[1].startswith("4,50.0,1.23,2.50,10.00,5,1,2,10.0,90.0")
    assert full.as_dict()["cpu"]["ms_per_answer"]["stack"] == pytest.approx(10.0)


def test_compare_sums_the_stubs_into_one_segment() -> None:
    from perf.compare import cpu_by_process

    level = {"cpu": {"ms_per_answer": {"orchestrator": 5.0, "tritonserver": 1.0, "stub:prerank_pipeline_v1": 2.0,
                                       "stub:rank_pipeline_v1": 1.5, "redis-server": 0.25, "stack": 9.75, "generator": 0.1}}}
    assert cpu_by_process(level) == {"orchestrator": 5.0, "tritonserver": 1.0, "redis-server": 0.25, "generator": 0.1,
                                     "stubs": 3.5}
