"""Our own HTML pages (Jinja2): each view builds one dict (the same the JSON API returns) and renders it."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from historyserver import services
from historyserver.errors import BadRequest
from historyserver.live.listing import Filters
from historyserver.overview import session_overview
from historyserver.routes import live_prometheus
from historyserver.routes.deps import session_entry
from historyserver.search.links import search_url, text_query

router = APIRouter()
PAGES = Path(__file__).resolve().parent.parent / "pages"
STATIC_DIR = PAGES / "static"
templates = Jinja2Templates(directory=str(PAGES / "templates"))


def _ms_time(v: float | None) -> str:
    return datetime.fromtimestamp(v / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if v else ""


def _duration(ms: float | None) -> str:
    if ms is None:
        return ""
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"


def _span(ms: float | None) -> str:
    """A duration as people read it, below a second too: 0.4 ms, 850 ms, 12.4 s, 3m 05s."""
    if ms is None:
        return ""
    a = abs(ms)
    sign = "-" if ms < 0 else ""
    if a == 0:
        return "0 ms"
    if a < 1:
        return f"{sign}{a:.2f} ms"
    if a < 1000:
        return f"{sign}{a:.0f} ms"
    if a < 60_000:
        return f"{sign}{a / 1000:.2f} s" if a < 10_000 else f"{sign}{a / 1000:.1f} s"
    return sign + _duration(a)


templates.env.filters.update(
    ms_time=_ms_time,
    duration=_duration,
    span=_span,
    gib=lambda b: f"{b / 2**30:.1f} GiB" if b else "",
    text_query=text_query,
)
templates.env.globals.update(search_url=search_url)


@router.get("/", response_class=HTMLResponse)
def sessions_page(
    request: Request,
    namespace: str | None = None,
    cluster: str | None = None,
    status: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> HTMLResponse:
    """Live clusters and archived sessions in one table; the form's empty fields mean "any"."""
    from historyserver.routes.clusters import listing

    filters = Filters(namespace or None, cluster or None, status or None, _day_ms(since), _day_ms(until), limit, offset)
    context = {
        "page": listing(request, filters),
        "f": {
            "namespace": namespace or "",
            "cluster": cluster or "",
            "status": status or "",
            "since": since or "",
            "until": until or "",
        },
        "archive": services.of(request).store.url,
    }
    return templates.TemplateResponse(request, "sessions.html", context)


def _day_ms(value: str | None) -> int | None:
    """A form's date (YYYY-MM-DD, UTC) or datetime as epoch ms."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as e:
        raise BadRequest(f"{value!r} is not a date; give YYYY-MM-DD or YYYY-MM-DDTHH:MM") from e
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp() * 1000)


@router.get("/sessions/{session_id}/overview", response_class=HTMLResponse)
def overview_page(request: Request, session_id: str) -> HTMLResponse:
    entry = session_entry(request, session_id)
    context = {
        "o": session_overview(entry, services.of(request).warehouse.db(entry)),
        # A running session's charts read the live Prometheus when there is one (--prometheus-url), else the archive.
        "live_api": live_prometheus.live_url(request, entry),
    }
    return templates.TemplateResponse(request, "session.html", context)


@router.get("/sessions/{session_id}/timeline", response_class=HTMLResponse)
def timeline_page(request: Request, session_id: str, job_id: str | None = None) -> HTMLResponse:
    entry = session_entry(request, session_id)
    db = services.of(request).warehouse.db(entry)
    jobs = [j["job_id"] for j in db.jobs() if j["job_id"]]
    context = {"s": entry.summary(""), "job_id": job_id, "jobs": jobs}
    return templates.TemplateResponse(request, "timeline.html", context)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request, a: str | None = None, b: str | None = None, entrypoint: str | None = None
) -> HTMLResponse:
    """Two sessions side by side (the same dict as GET /api/v1/compare)."""
    from historyserver.routes.sessions_api import compare_sessions

    context = {"c": compare_sessions(request, a, b, entrypoint)}
    return templates.TemplateResponse(request, "compare.html", context)
