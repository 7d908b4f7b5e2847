"""What every route shares: the request's view of the catalog, the session lookup (the one gate every
/sessions/{id}/ route passes), and Ray's response envelopes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from historyserver import services
from historyserver.access.principal import Access
from historyserver.catalog import CatalogView, SessionEntry
from historyserver.errors import BadRequest
from historyserver.queries.session_db import SessionDB

RAY_MAX_LIMIT = 10000  # Ray's RAY_MAX_LIMIT_FROM_API_SERVER: larger limits are capped, not refused
RAY_DEFAULT_LIMIT = 100
LARGE_PAGE = 1000  # rows from which a page counts as a large answer (admitted through the large-answer gate)
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
    return services.of(request).catalog.visible(seen.allows, seen.decide_all)


def namespaces_named(request: Request, cluster: str) -> set[str]:
    """Every namespace the archive knows a cluster named `cluster` in, beyond what the request may see: for checks
    that protect the other namespaces (live charts pinned by a cluster name alone). Never shown to the user."""
    return {e.manifest.namespace for e in services.of(request).catalog.sessions() if e.manifest.cluster == cluster}


def session_entry(request: Request, session_id: str) -> SessionEntry:
    return catalog(request).get(session_id)


def session_db(request: Request, session_id: str) -> SessionDB:
    return services.of(request).warehouse.db(session_entry(request, session_id))


def ray_ok(data: Any, msg: str = "") -> dict[str, Any]:
    """The {result, msg, data} envelope of /nodes, /logical/actors, /api/cluster_status, /events."""
    return {"result": True, "msg": msg, "data": data}


def fast_json(body: Any) -> Response:
    """JSON written by orjson, bypassing FastAPI's encoder (which takes seconds over 10,000 task records)."""
    try:
        text = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # what orjson cannot write (an integer beyond 64 bits): the standard encoder
        text = json.dumps(body).encode()
    return Response(text, media_type="application/json")


def state_envelope(total: int, filtered: int, rows: list[Any], warning: str = "", raw: bool = False) -> Response:
    """The envelope of /api/v0/* (Ray's state API). `raw`: rows are JSON texts, spliced in unparsed."""
    if raw:
        marker = "\u0000rows\u0000"
        envelope = state_envelope(total, filtered, marker, warning).body  # type: ignore[arg-type]
        spliced = envelope.replace(orjson.dumps(marker), ("[" + ",".join(rows) + "]").encode(), 1)
        return Response(spliced, media_type="application/json")
    return fast_json(
        ray_ok(
            {
                "result": {
                    "total": total,
                    "num_after_truncation": total,
                    "num_filtered": filtered,
                    "result": rows,
                    "partial_failure_warning": warning,
                    "warnings": None,
                }
            }
        )
    )


def ray_limit(limit: int | None) -> int:
    if limit is None:
        return RAY_DEFAULT_LIMIT
    if limit < 1:
        raise BadRequest(f"limit must be positive, got {limit}")
    return min(limit, RAY_MAX_LIMIT)


@contextmanager
def large_answer(request: Request, large: bool = True) -> Iterator[None]:
    """Build a large answer only with a slot of the large-answer gate (else 503 + Retry-After)."""
    if not large:
        yield
        return
    with services.of(request).gates.large.slot():
        yield
