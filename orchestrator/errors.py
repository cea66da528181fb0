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


def install_error_handlers(app: FastAPI, max_body_bytes: int, path_body_bytes: Mapping[str, int] | None = None) -> None:
    """`path_body_bytes`: body limits of routes that take more than `max_body_bytes` (feedback batches)."""
    limits = dict(path_body_bytes or {})
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(NotReady, _not_ready)
    app.add_exception_handler(Unauthorized, _unauthorized)

    @app.middleware("http")
    async def limit_body_and_answer_the_unexpected(request: Request, call_next):
        length = request.headers.get("content-length")
        limit = limits.get(request.url.path, max_body_bytes)
        if length is not None and (not length.isdigit() or int(length) > limit):
            body = ErrorBody(error=f"body: request body over {limit} bytes", fields=["body"])
            return JSONResponse(status_code=413, content=body.model_dump())
        try:
            return await call_next(request)
        except Exception as err:  # no stage could answer: say so, log the cause, never a bare 500
            log.exception("no answer for %s %s", request.method, request.url.path)
            return _unavailable(f"no answer could be produced ({type(err).__name__}); the orchestrator log has the cause")
