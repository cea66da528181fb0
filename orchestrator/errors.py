"""Domain errors mapped to HTTP in one place: only invalid input is a 4xx."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from orchestrator.schemas import ErrorBody


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [(_field(tuple(e["loc"])), e["msg"]) for e in exc.errors()]
    message = "; ".join(f"{field}: {msg}" for field, msg in problems)
    body = ErrorBody(error=f"invalid request: {message}", fields=[f for f, _ in problems])
    return JSONResponse(status_code=422, content=body.model_dump())


def install_error_handlers(app: FastAPI, max_body_bytes: int) -> None:
    app.add_exception_handler(RequestValidationError, _invalid)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
            body = ErrorBody(error=f"body: request body over {max_body_bytes} bytes", fields=["body"])
            return JSONResponse(status_code=413, content=body.model_dump())
        return await call_next(request)
