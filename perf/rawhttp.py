"""The load generator's side of HTTP: the recommend request it sends and what it makes of the
answer. The HTTP/1.1 client itself is `orchestrator.clients.http1`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum


class Outcome(Enum):
    OK = "ok"  # 200 with a JSON body
    SHED = "shed"  # 503: the server refused the work under overload
    OTHER = "other"  # any other status, or a 200 whose body is not JSON


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    degraded: bool = False  # a stage was skipped (`degraded` is a non-empty list)
    ranked: bool = False  # `scored_by == "rank"`: the full funnel scored the answer


def build_request(host: str, path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


def classify_answer(status: int, body: bytes) -> Answer:
    if status == 503:
        return Answer(Outcome.SHED)
    if status != 200:
        return Answer(Outcome.OTHER)
    try:
        doc = json.loads(body)
    except ValueError:
        return Answer(Outcome.OTHER)
    if not isinstance(doc, dict):
        return Answer(Outcome.OTHER)
    return Answer(Outcome.OK, degraded=bool(doc.get("degraded")), ranked=doc.get("scored_by") == "rank")
