"""Domain errors mapped to HTTP in one place: only invalid input is a 4xx.

Stage failures never get here: the funnel degrades them (see `orchestrator.stages`). What does get
here is a request no stage could answer: the orchestrator not started (`NotReady`), or an
unexpected error, which is logged and answered 503 with a body saying so, never a bare 500.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.schemas import ErrorBody

log = logging.getLogger("cascade.orchestrator")


class NotReady(RuntimeError):
    """What requests need (the funnel, its resources and clients) is not there: startup has not run or failed."""


class InvalidInput(ValueError):
    """Well-formed input the schema cannot judge, e.g. an item id outside the catalogue: a 422 naming the fields."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in problems))
        self.problems = problems


class Unauthorized(PermissionError):
    """An operator endpoint called without the right CASCADE_ADMIN_TOKEN: a 401."""


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def _unprocessable(problems: list[tuple[str, str]]) -> JSONResponse:
    message = "; ".join(f"{field}: {msg}" for field, msg in problems)
    body = ErrorBody(error=f"invalid request: {message}", fields=[f for f, _ in problems])
    return JSONResponse(status_code=422, content=body.model_dump())


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    return _unprocessable([(_field(tuple(e["loc"])), e["msg"]) for e in exc.errors()])


async def _invalid_input(_: Request, exc: InvalidInput) -> JSONResponse:
    return _unprocessable(exc.problems)


def _unavailable(message: str) -> JSONResponse:
    return JSONResponse(status_code=503, content=ErrorBody(error=f"service unavailable: {message}").model_dump())


async def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
    return JSONResponse(
        status_code=401, content=ErrorBody(error=f"unauthorized: {exc}").model_dump(), headers={"WWW-Authenticate": "Bearer"}
    )


async def _not_ready(_: Request, exc: NotReady) -> JSONResponse:
    log.error("request refused, orchestrator not ready: %s", exc)
    return _unavailable(f"the orchestrator is not ready ({exc})")


class GuardedBody:
    """Pure ASGI middleware (no BaseHTTPMiddleware: that one costs a task and a stream per request):
    a body over its route's limit is a 413 before anything reads it, and an error no handler mapped is
    a logged 503 saying so, never a bare 500."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, path_body_bytes: Mapping[str, int] | None = None) -> None:
        self.app, self.max_body_bytes, self.limits = app, max_body_bytes, dict(path_body_bytes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.max_body_bytes)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > limit):
            body = ErrorBody(error=f"body: request body over {limit} bytes", fields=["body"])
            await JSONResponse(status_code=413, content=body.model_dump())(scope, receive, send)
            return
        started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception as err:  # no stage could answer: say so, log the cause, never a bare 500
            log.exception("no answer for %s %s", scope["method"], scope["path"])
            if started:
                raise
            answer = _unavailable(f"no answer could be produced ({type(err).__name__}); the orchestrator log has the cause")
            await answer(scope, receive, send)


def install_error_handlers(app: FastAPI, max_body_bytes: int, path_body_bytes: Mapping[str, int] | None = None) -> None:
    """`path_body_bytes`: body limits of routes that take more than `max_body_bytes` (feedback batches)."""
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(NotReady, _not_ready)
    app.add_exception_handler(Unauthorized, _unauthorized)
    app.add_middleware(GuardedBody, max_body_bytes=max_body_bytes, path_body_bytes=path_body_bytes)
