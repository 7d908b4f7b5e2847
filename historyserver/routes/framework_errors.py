"""FastAPI's and Starlette's own errors (a parameter that fails validation, an unknown route, a wrong method) in
each API family's shape, instead of their `{"detail": ...}`: a client of one family reads one error shape."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from historyserver.routes import prometheus_api
from historyserver.routes.errors import ours, ray_envelope

MAX_SHOWN = 80  # characters of a rejected value quoted back: a 10 MB parameter is not echoed


def family_error(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    path = request.url.path
    if prometheus_api.is_prometheus_path(path):
        response = prometheus_api.error(status, "bad_data" if status < 500 else "internal", message)
        response.headers.update(headers or {})
        return response
    if path.startswith("/sessions/"):
        return ray_envelope(status, message, headers)
    return ours(status, code, message, headers)


def _describe(error: dict) -> str:
    loc = [str(part) for part in error.get("loc", ())]
    where = f"{loc[0]} parameter {'.'.join(loc[1:])!r}" if len(loc) > 1 else "request"
    shown = repr(error.get("input"))
    if len(shown) > MAX_SHOWN:
        shown = shown[:MAX_SHOWN] + "..."
    return f"invalid {where}: {error.get('msg', 'invalid value')} (got {shown})"


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return family_error(request, 400, "BadRequest", "; ".join(_describe(e) for e in exc.errors()))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404:
        message = f"no such page or API route: {request.url.path[:200]}; GET /api/docs lists the API"
    code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    return family_error(request, exc.status_code, code, message, exc.headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(HTTPException, handle_http_exception)
