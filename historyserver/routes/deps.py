"""What every route shares: the request's view of the catalog, the session lookup (the one gate every
/sessions/{id}/ route passes), and Ray's response envelopes."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from historyserver.access.principal import Access
from historyserver.catalog import CatalogView, SessionEntry
from historyserver.errors import BadRequest
from historyserver.queries.session_db import SessionDB

RAY_MAX_LIMIT = 10000  # Ray's RAY_MAX_LIMIT_FROM_API_SERVER: larger limits are capped, not refused
RAY_DEFAULT_LIMIT = 100
SESSION_PREFIX = "/sessions/{session_id}"


def access(request: Request) -> Access:
    """What the request may see, set by routes/access.py's middleware (missing: refuse rather than show all)."""
    found = getattr(request.state, "access", None)
    if not isinstance(found, Access):
        raise RuntimeError("no access was resolved for this request: create_app installs AccessMiddleware")
    return found


def catalog(request: Request) -> CatalogView:
    """The catalog as this request may see it; routes read sessions only through this."""
    seen = access(request)
    return request.app.state.catalog.visible(seen.allows, seen.decide_all)


def session_entry(request: Request, session_id: str) -> SessionEntry:
    return catalog(request).get(session_id)


def session_db(request: Request, session_id: str) -> SessionDB:
    return request.app.state.warehouse.db(session_entry(request, session_id))


def ray_ok(data: Any, msg: str = "") -> dict[str, Any]:
    """The {result, msg, data} envelope of /nodes, /logical/actors, /api/cluster_status, /events."""
    return {"result": True, "msg": msg, "data": data}


def state_envelope(total: int, filtered: int, rows: list[Any], warning: str = "") -> dict[str, Any]:
    """The envelope of /api/v0/* (Ray's state API)."""
    return ray_ok({
        "result": {
            "total": total,
            "num_after_truncation": total,
            "num_filtered": filtered,
            "result": rows,
            "partial_failure_warning": warning,
            "warnings": None,
        }
    })


def ray_limit(limit: int | None) -> int:
    if limit is None:
        return RAY_DEFAULT_LIMIT
    if limit < 1:
        raise BadRequest(f"limit must be positive, got {limit}")
    return min(limit, RAY_MAX_LIMIT)
