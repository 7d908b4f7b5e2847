"""Our own JSON API: the catalog of archived sessions."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from archive.compacted import TASK_TIMELINE
from historyserver import services
from historyserver.errors import BadRequest
from historyserver.overview import session_overview
from historyserver.queries import compare, critical_path, dashboards, timeline_view
from historyserver.routes.deps import catalog, fast_json, large_answer, session_entry

router = APIRouter(prefix="/api/v1")

STATUSES = ("running", "ended", "unfinished")


@router.get("/sessions")
def list_sessions(
    request: Request,
    namespace: str | None = None,
    cluster: str | None = None,
    status: str | None = None,
    start_after: int | None = Query(None, description="only sessions that started at or after (epoch ms)"),
    start_before: int | None = Query(None, description="only sessions that started before (epoch ms)"),
    limit: int = Query(100, ge=1, le=10000),
    offset: int = Query(0, ge=0),
) -> dict:
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status {status!r} is not known; use one of {', '.join(STATUSES)}")
    entries = [
        e
        for e in catalog(request).sessions()
        if (namespace is None or e.manifest.namespace == namespace)
        and (cluster is None or e.manifest.cluster == cluster)
        and (status is None or e.status == status)
        and (start_after is None or (e.manifest.start_ms or 0) >= start_after)
        and (start_before is None or (e.manifest.start_ms or 0) < start_before)
    ]
    base = str(request.base_url).rstrip("/")
    return {
        "total": len(entries),
        "offset": offset,
        "limit": limit,
        "sessions": [e.summary(base) for e in entries[offset : offset + limit]],
    }


@router.get("/sessions/{session_id}")
def get_session(request: Request, session_id: str) -> dict:
    entry = session_entry(request, session_id)
    base = str(request.base_url).rstrip("/")
    return {**entry.summary(base), "manifest": entry.manifest.to_dict()}


@router.get("/sessions/{session_id}/overview")
def get_overview(request: Request, session_id: str) -> dict:
    entry = session_entry(request, session_id)
    return session_overview(entry, services.of(request).warehouse.db(entry))


@router.get("/sessions/{session_id}/timeline")
def get_timeline(
    request: Request,
    session_id: str,
    start: float | None = Query(None, description="window start (epoch ms; default: the first attempt's creation)"),
    end: float | None = Query(None, description="window end (epoch ms; default: the last attempt's end)"),
    width: int = Query(1000, description="pixels the window is drawn on: density has at most this many buckets"),
    job_id: list[str] = Query(default=[], description="only these jobs (repeatable)"),
    function: list[str] = Query(default=[], description="only these functions or classes (repeatable)"),
    state: list[str] = Query(default=[], description="only attempts in these states (repeatable)"),
    color_by: str = Query("state", description="density keys: state, function or job"),
) -> Response:
    """The task attempts of a time window: their count, and per-lane density or (zoomed in) the attempts."""
    entry = session_entry(request, session_id)
    db = services.of(request).warehouse.db(entry, needs=(TASK_TIMELINE,))
    with large_answer(request):
        view = timeline_view.timeline_view(
            db, timeline_view.ViewFilter(job_id, function, state), start, end, width, color_by
        )
        return fast_json(view)


@router.get("/sessions/{session_id}/timeline/critical_path")
def get_critical_path(
    request: Request,
    session_id: str,
    job_id: str | None = Query(None, description="the job (default: the job whose task attempt ended last)"),
) -> Response:
    """The chain of task attempts that decided when the job finished, each with its wait and run
    (historyserver/queries/critical_path.py defines it)."""
    entry = session_entry(request, session_id)
    db = services.of(request).warehouse.db(entry, needs=(TASK_TIMELINE,))
    with large_answer(request):
        return fast_json(critical_path.critical_path(db, job_id))


def compare_sessions(request: Request, a: str | None, b: str | None, entrypoint: str | None) -> dict:
    """The dict GET /api/v1/compare answers and the /compare page renders."""
    if not a or not b:
        raise BadRequest(
            "give two sessions to compare: ?a=<session id>&b=<session id> (GET /api/v1/sessions lists them)"
        )
    base = str(request.base_url).rstrip("/")
    entries = [session_entry(request, sid) for sid in (a, b)]
    dbs = [services.of(request).warehouse.db(e, needs=(TASK_TIMELINE,)) for e in entries]
    with large_answer(request):
        return compare.compare(dbs[0], dbs[1], entries[0].summary(base), entries[1].summary(base), entrypoint or None)


@router.get("/compare")
def get_compare(
    request: Request,
    a: str | None = Query(None, description="the first session (the baseline, e.g. last night's)"),
    b: str | None = Query(None, description="the second session (e.g. tonight's)"),
    entrypoint: str | None = Query(None, description="only the jobs of this entrypoint, in both sessions"),
) -> Response:
    """Duration per function and per phase in two sessions, side by side, biggest differences first."""
    return fast_json(compare_sessions(request, a, b, entrypoint))


@router.get("/sessions/{session_id}/dashboards")
def list_dashboards(request: Request, session_id: str) -> dict:
    """The Grafana dashboards Ray generated for this session, with a datasource variable (import them into
    Grafana: their version matches the session's Ray)."""
    entry = session_entry(request, session_id)
    boards = dashboards.session_dashboards(
        services.of(request).store, entry, services.of(request).settings.grafana_datasource
    )
    base = f"{str(request.base_url).rstrip('/')}/api/v1/sessions/{session_id}/dashboards"
    return {
        "dashboards": [
            {"uid": uid, "title": b.get("title"), "url": f"{base}/{uid}"} for uid, b in sorted(boards.items())
        ]
    }


@router.get("/sessions/{session_id}/dashboards/{uid}")
def get_dashboard(request: Request, session_id: str, uid: str) -> dict:
    entry = session_entry(request, session_id)
    return dashboards.session_dashboard(
        services.of(request).store, entry, uid, services.of(request).settings.grafana_datasource
    )
