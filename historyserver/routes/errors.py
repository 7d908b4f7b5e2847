"""One error shape per API family: Ray's envelope under /sessions/{id}/, ours under /api/v1/."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from historyserver.errors import HistoryError
from historyserver.routes import prometheus_api


def ray_envelope(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"result": False, "msg": message, "data": None}, status_code=status, headers=headers)


def ours(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def error_headers(exc: Exception) -> dict[str, str] | None:
    retry_after = getattr(exc, "retry_after", None)
    return {"Retry-After": str(retry_after)} if retry_after else None


async def handle_history_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HistoryError)
    if prometheus_api.is_prometheus_path(request.url.path):  # Prometheus's shape, whatever the prefix
        return prometheus_api.history_error(exc)
    if request.url.path.startswith("/sessions/"):
        return ray_envelope(exc.status, str(exc), error_headers(exc))
    return ours(exc.status, type(exc).__name__, str(exc), error_headers(exc))
