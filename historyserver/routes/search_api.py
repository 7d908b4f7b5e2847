"""Log search over HTTP (issue 11, README "Log search"): one session's logs, or every session the catalog keeps
after the namespace/cluster/session and time filters; the hits-over-time histogram; the lines around a hit.
Thin: parsing the request here, the work in historyserver/search (the backend search_backend picks)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from historyserver import services
from historyserver.catalog import SessionEntry
from historyserver.errors import TooLarge
from historyserver.routes.deps import catalog, fast_json, session_entry
from historyserver.search.backend import SearchFilters, SearchRequest
from historyserver.search.backends import archive_backend, search_backend
from historyserver.search.errors import SearchRefused
from historyserver.search.query import MatchAll, QuerySyntaxError, parse

router = APIRouter(prefix="/api/v1")

DEFAULT_LIMIT = 100
DEFAULT_BUCKETS = 60
MAX_BUCKETS = 1000
MAX_EPOCH_S = 1e11  # year ~5138: beyond it a time is a mistake (and overflows milliseconds in 64 bits)


def _time(name: str, value: str | None) -> float | None:
    """Epoch seconds, or ISO 8601 (UTC unless it says otherwise)."""
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or abs(seconds) > MAX_EPOCH_S:
            raise SearchRefused(
                f"{name}={value!r} is not a time: give epoch seconds (0 to {MAX_EPOCH_S:.0e}) or ISO 8601"
            )
        return seconds
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SearchRefused(
            f"{name}={value!r} is not a time: give epoch seconds or ISO 8601 (2026-11-25T19:58:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


@dataclass(frozen=True)
class _Params:
    """The parameters every search route shares: the query and the filters of the lines."""

    q: str
    mode: str
    node_id: list[str]
    file: list[str]
    job_id: list[str]
    level: list[str]
    since: str | None
    until: str | None

    def request(self, limit: int, cursor: str | None) -> SearchRequest:
        if self.mode not in ("terms", "regex"):
            raise SearchRefused(f"mode={self.mode!r}: use terms (the query language) or regex (an RE2 pattern)")
        filters = SearchFilters(
            node_id=tuple(self.node_id),
            file=tuple(self.file),
            job_id=tuple(self.job_id),
            level=tuple(self.level),
            since=_time("since", self.since),
            until=_time("until", self.until),
        )
        if filters.since is not None and filters.until is not None and filters.since > filters.until:
            raise SearchRefused(f"since ({self.since}) is after until ({self.until}): swap them")
        if self.mode == "regex":
            return SearchRequest(MatchAll(), self.q, "regex", self.q, filters, limit, cursor)
        try:
            node = parse(self.q)
        except QuerySyntaxError as e:
            raise SearchRefused(str(e), e.position, tuple(e.expected)) from None
        return SearchRequest(node, self.q, "terms", None, filters, limit, cursor)


def _params(
    q: str = Query("", description="the query (terms mode: the query language; regex mode: an RE2 pattern, grep -E)"),
    mode: Literal["terms", "regex"] = Query("terms", description="terms or regex"),
    node_id: list[str] = Query([]),
    file: list[str] = Query([]),
    job_id: list[str] = Query([]),
    level: list[str] = Query([]),
    since: str | None = None,
    until: str | None = None,
) -> _Params:
    return _Params(q, mode, node_id, file, job_id, level, since, until)


@dataclass(frozen=True)
class _Scope:
    """Which sessions a search across the archive reads, before any time filter."""

    namespace: str | None
    cluster: str | None
    session: list[str]


def _scope(namespace: str | None = None, cluster: str | None = None, session: list[str] = Query([])) -> _Scope:
    return _Scope(namespace, cluster, session)


def _sessions(request: Request, scope: _Scope, since: float | None, until: float | None) -> list[SessionEntry]:
    """The sessions a search across the archive reads, newest first: pruned by the catalog alone."""
    namespace, cluster, session = scope.namespace, scope.cluster, scope.session
    kept = []
    for e in catalog(request).sessions():
        m = e.manifest
        if namespace and m.namespace != namespace or cluster and m.cluster != cluster:
            continue
        if session and m.ref.id not in session and m.session_name not in session:
            continue
        start = (m.start_ms or 0) / 1000
        end = e.end_ms / 1000 if e.end_ms else None
        if until is not None and start >= until:
            continue
        if since is not None and end is not None and end < since:
            continue
        kept.append(e)
    most = services.of(request).settings.query_max_sessions
    if len(kept) > most:
        raise TooLarge(
            f"the search would read {len(kept)} sessions; at most {most} (--query-max-sessions): narrow it with "
            "namespace=, cluster=, session= or since=/until="
        )
    return kept


@router.get("/sessions/{session_id}/logs/search")
def search_session(
    request: Request,
    session_id: str,
    params: _Params = Depends(_params),
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    req = params.request(limit, cursor)
    entry = session_entry(request, session_id)
    svc = services.of(request)
    with svc.gates.searches.slot():
        answer = search_backend(svc).search([entry.ref], req)
    return fast_json(answer.to_json())


@router.get("/logs/search")
def search_sessions(
    request: Request,
    params: _Params = Depends(_params),
    scope: _Scope = Depends(_scope),
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    req = params.request(limit, cursor)
    entries = _sessions(request, scope, req.filters.since, req.filters.until)
    svc = services.of(request)
    with svc.gates.searches.slot():
        answer = search_backend(svc, across=True).search([e.ref for e in entries], req)
    body = answer.to_json()
    body["sessions"] = len(entries)
    return fast_json(body)


def _histogram(
    request: Request, entries: list[SessionEntry], req: SearchRequest, buckets: int, across: bool = False
) -> Response:
    if not 1 <= buckets <= MAX_BUCKETS:
        raise SearchRefused(f"buckets={buckets}: give 1 to {MAX_BUCKETS}")
    svc = services.of(request)
    archive = archive_backend(svc, across)
    backend = search_backend(svc, across, archive)
    with svc.gates.searches.slot():
        counts = backend.histogram([e.ref for e in entries], req, buckets)
    width = counts[1][0] - counts[0][0] if len(counts) > 1 else None
    pending = archive.pending
    waiting = pending.warnings() if pending else []
    return fast_json(
        {
            "backend": backend.name,
            "complete": not waiting,
            "pending_sessions": len(pending.refs) if pending else 0,
            "warnings": waiting,
            "width": width,
            "buckets": [{"start": t, "count": n} for t, n in counts],
        }
    )


@router.get("/sessions/{session_id}/logs/search/histogram")
def histogram_session(
    request: Request,
    session_id: str,
    params: _Params = Depends(_params),
    buckets: int = DEFAULT_BUCKETS,
) -> Response:
    req = params.request(1, None)
    return _histogram(request, [session_entry(request, session_id)], req, buckets)


@router.get("/logs/search/histogram")
def histogram_sessions(
    request: Request,
    params: _Params = Depends(_params),
    scope: _Scope = Depends(_scope),
    buckets: int = DEFAULT_BUCKETS,
) -> Response:
    req = params.request(1, None)
    entries = _sessions(request, scope, req.filters.since, req.filters.until)
    return _histogram(request, entries, req, buckets, across=True)


@router.get("/sessions/{session_id}/logs/context")
def context(
    request: Request,
    session_id: str,
    # Required, but checked after the session is: an invisible session answers as an unknown one, whatever else
    # is wrong with the request (tests/test_access_matrix.py).
    node_id: str | None = None,
    file: str | None = None,
    line: int | None = None,
    before: int = Query(10, ge=0),
    after: int = Query(10, ge=0),
) -> Response:
    entry = session_entry(request, session_id)
    missing = [name for name, value in (("node_id", node_id), ("file", file), ("line", line)) if value is None]
    if missing:
        raise SearchRefused(f"give {', '.join(missing)}: the context is the lines around one line of one file")
    if line is not None and line < 1:
        raise SearchRefused(f"line={line}: lines count from 1")
    assert node_id is not None and file is not None and line is not None
    svc = services.of(request)
    with svc.gates.searches.slot():
        answer = search_backend(svc).context(entry.ref, node_id, file, line, before, after)
    return fast_json(answer.to_json())
