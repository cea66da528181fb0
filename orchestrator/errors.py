"""Domain errors mapped to HTTP in one place: only invalid input is a 4xx.

Stage failures never get here: the funnel degrades them (see `orchestrator.stages`). What does get
here is a request no stage could answer: the orchestrator not started (`NotReady`), a backend a
route cannot do without down (Redis for feedback), or an unexpected error, which is logged. Each is
a 503 with a body saying which and a Retry-After header, never a bare 500.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.asgi import StatusNoted
from orchestrator.clients.errors import BackendTimeout, BackendUnavailable
from orchestrator.schemas import ErrorBody

log = logging.getLogger("cascade.orchestrator")

RETRY_AFTER_S = 1  # what every 503 asks a client to wait, as the door's shed answers do

_RETRY_AFTER_DOC = {
    "Retry-After": {"description": "seconds to wait before trying again", "required": True, "schema": {"type": "integer"}},
}
UNAVAILABLE = {
    "model": ErrorBody, "headers": _RETRY_AFTER_DOC,
    "description": "service unavailable: not ready, overloaded, or a backend it needs is down (the body says which)",
}
TOO_LARGE = {"model": ErrorBody, "description": "the body is over the route's limit"}
TOO_MANY = {
    "model": ErrorBody, "headers": _RETRY_AFTER_DOC,
    "description": "this client sent more events than its rate allows (CASCADE_FEEDBACK_RATE_PER_S, _BURST)",
}
UNPROCESSABLE = {"model": ErrorBody, "description": "invalid input: `fields` names each field at fault"}


class NotReady(RuntimeError):
    """What requests need (the funnel, its resources and clients) is not there: startup has not run or failed."""


class InvalidInput(ValueError):
    """Well-formed input the schema cannot judge, e.g. an item id outside the catalogue: a 422 naming the fields."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {msg}" for field, msg in problems))
        self.problems = problems


class Unauthorized(PermissionError):
    """An operator endpoint called without the right CASCADE_ADMIN_TOKEN: a 401."""


class RateLimited(RuntimeError):
    """A client over its feedback rate: a 429 with Retry-After."""

    def __init__(self, retry_after_s: int, message: str) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BodyTooLarge(HTTPException):
    """More body bytes arrived than the route's limit: a 413. An HTTPException because FastAPI turns
    any other error raised while it reads a body into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"body: request body over {limit} bytes")


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


def _too_large(exc: BodyTooLarge) -> JSONResponse:
    return JSONResponse(status_code=413, content=ErrorBody(error=exc.detail, fields=["body"]).model_dump())


async def _body_too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
    return _too_large(exc)


def _unavailable(message: str) -> JSONResponse:
    return JSONResponse(
        status_code=503, content=ErrorBody(error=f"service unavailable: {message}").model_dump(),
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
    return JSONResponse(
        status_code=401, content=ErrorBody(error=f"unauthorized: {exc}").model_dump(), headers={"WWW-Authenticate": "Bearer"}
    )


async def _rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
    return JSONResponse(
        status_code=429, content=ErrorBody(error=f"too many requests: {exc}").model_dump(),
        headers={"Retry-After": str(exc.retry_after_s)},
    )


async def _not_ready(_: Request, exc: NotReady) -> JSONResponse:
    log.error("request refused, orchestrator not ready: %s", exc)
    return _unavailable(f"the orchestrator is not ready ({exc})")


async def _backend_down(_: Request, exc: BackendUnavailable | BackendTimeout) -> JSONResponse:
    """The clients' messages start with the backend's name (`redis: ...`)."""
    log.warning("request refused, backend %s: %s", "timed out" if isinstance(exc, TimeoutError) else "down", exc)
    return _unavailable(str(exc))


class GuardedBody:
    """Pure ASGI middleware (no BaseHTTPMiddleware: that one costs a task and a stream per request):
    a body over its route's limit is a 413, and an error no handler mapped is a logged 503 saying so,
    never a bare 500.

    A Content-Length over the limit is refused before anything reads the body. A body without one
    (chunked, streamed) is counted as it arrives: the read that passes the limit raises `BodyTooLarge`,
    so at most the limit plus one chunk is ever held, whoever reads."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, path_body_bytes: Mapping[str, int] | None = None) -> None:
        self.app, self.max_body_bytes, self.limits = app, max_body_bytes, dict(path_body_bytes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.max_body_bytes)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _too_large(BodyTooLarge(limit))(scope, receive, send)
            return
        received = 0
        noted = StatusNoted(send)

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, receive_counted, noted)
        except BodyTooLarge as err:  # read where no exception handler runs (a middleware)
            if noted.status is not None:
                raise
            await _too_large(err)(scope, receive, send)
        except Exception as err:  # no stage could answer: say so, log the cause, never a bare 500
            log.exception("no answer for %s %s", scope["method"], scope["path"])
            if noted.status is not None:
                raise
            answer = _unavailable(f"no answer could be produced ({type(err).__name__}); the orchestrator log has the cause")
            await answer(scope, receive, send)


def install_error_handlers(app: FastAPI, max_body_bytes: int, path_body_bytes: Mapping[str, int] | None = None) -> None:
    """`path_body_bytes`: body limits of routes that take more than `max_body_bytes` (feedback batches)."""
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(BodyTooLarge, _body_too_large)
    app.add_exception_handler(NotReady, _not_ready)
    app.add_exception_handler(BackendUnavailable, _backend_down)
    app.add_exception_handler(BackendTimeout, _backend_down)
    app.add_exception_handler(Unauthorized, _unauthorized)
    app.add_exception_handler(RateLimited, _rate_limited)
    app.add_middleware(GuardedBody, max_body_bytes=max_body_bytes, path_body_bytes=path_body_bytes)
