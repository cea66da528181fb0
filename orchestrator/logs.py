"""The orchestrator's logs: one JSON object per line, with a UTC timestamp, to stdout or to a
size-rotated file (CASCADE_LOG_FILE, _LOG_MAX_BYTES, _LOG_BACKUPS).

A degraded answer is one line (`log_degraded`: its request id, user, arm and every skipped stage
with its reason and error), not one per stage; every operator call (/admin) is one line
(`AdminAudit`: method, path, status, client, milliseconds), failures and refusals included.
"""
from __future__ import annotations

import logging
import logging.handlers
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.asgi import StatusNoted

log = logging.getLogger("cascade.orchestrator")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}  # attributes every record has


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: ts, level, logger, msg, the `extra` fields, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
            **{k: v for k, v in vars(record).items() if k not in _STANDARD},
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def configure_logging(level: str = "INFO", file: Path | None = None, max_bytes: int = 10 << 20, backups: int = 5) -> logging.Handler:
    """JSON lines for the `cascade` loggers: to stdout, or to `file` rotated at `max_bytes` keeping
    `backups` old files. Replaces what an earlier call installed (one handler per process)."""
    handler: logging.Handler
    if file is None:
        handler = logging.StreamHandler(sys.stdout)
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("cascade")
    for old in [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return handler


def log_degraded(request_id: str, user_id: int, arm: str, scored_by: str, stages: list[dict[str, str]]) -> None:
    """One line for a degraded answer, every skipped stage in it."""
    log.warning("answer degraded", extra={
        "event": "degraded", "request_id": request_id, "user_id": user_id, "arm": arm, "scored_by": scored_by,
        "stages": stages,
    })


class AdminAudit:
    """Pure ASGI middleware: each /admin call, answered or refused, as one log line."""

    def __init__(self, app: ASGIApp, prefix: str = "/admin") -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        started, noted = time.perf_counter(), StatusNoted(send)
        try:
            await self.app(scope, receive, noted)
        finally:
            client = scope.get("client") or ("?", 0)
            log.info("admin call", extra={
                "event": "admin", "method": scope["method"], "path": scope["path"], "status": noted.status or 500,
                "client": f"{client[0]}:{client[1]}", "ms": round((time.perf_counter() - started) * 1e3, 3),
            })
