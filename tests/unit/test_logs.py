"""The orchestrator's log lines (`orchestrator.logs`): JSON objects with a timestamp, to stdout or a
rotated file; operator calls each one line, refused ones too."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from cascade.settings import Settings
from orchestrator.app import build_app
from orchestrator.logs import JsonFormatter, configure_logging, log_degraded


def test_a_record_is_one_json_line_with_timestamp_and_extra_fields() -> None:
    record = logging.makeLogRecord({"name": "cascade.orchestrator", "levelname": "WARNING", "msg": "answer %s",
                                    "args": ("degraded",), "created": 1_700_000_000.25, "request_id": "r-1"})
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["ts"] == "2023-11-14T22:13:20.250+00:00" and entry["level"] == "WARNING"
    assert entry["msg"] == "answer degraded" and entry["request_id"] == "r-1" and entry["logger"] == "cascade.orchestrator"


def test_the_log_file_rotates_at_its_size(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "orchestrator.jsonl"
    handler = configure_logging("INFO", path, max_bytes=4_000, backups=2)
    try:
        for i in range(200):
            log_degraded(f"r-{i}", i, "none", "prerank", [{"stage": "rank", "reason": "timeout", "error": "late"}])
    finally:
        logging.getLogger("cascade").removeHandler(handler)
        handler.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["orchestrator.jsonl", "orchestrator.jsonl.1", "orchestrator.jsonl.2"]  # older ones dropped
    assert all(p.stat().st_size <= 4_000 for p in path.parent.iterdir())
    last = [json.loads(line) for line in path.read_text().splitlines()][-1]
    assert last["event"] == "degraded" and last["request_id"] == "r-199" and last["stages"][0]["stage"] == "rank"


async def test_admin_calls_are_logged_refused_ones_too(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = build_app(Settings(run_dir=tmp_path, admin_token="t" * 32))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        with caplog.at_level("INFO", logger="cascade.orchestrator"):
            refused = await http.post("/admin/models/rank/activate", json={"version": 2})
            await http.get("/v1/metrics-not-admin")
    assert refused.status_code in (401, 503)  # no token sent; and no lifespan ran: refused either way
    (line,) = [r for r in caplog.records if getattr(r, "event", None) == "admin"]
    assert (line.method, line.path, line.status) == ("POST", "/admin/models/rank/activate", refused.status_code)
    assert line.ms >= 0 and line.client
