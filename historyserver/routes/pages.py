"""Our own HTML pages (Jinja2): each view builds one dict (the same the JSON API returns) and renders it."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from historyserver import services
from historyserver.live.kube import KubernetesUnavailable
from historyserver.overview import session_overview
from historyserver.routes.deps import catalog, session_entry
from historyserver.routes.live_api import live_clusters, visible_rows
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


templates.env.filters.update(
    ms_time=_ms_time,
    duration=_duration,
    gib=lambda b: f"{b / 2**30:.1f} GiB" if b else "",
    text_query=text_query,
)
templates.env.globals.update(search_url=search_url)


@router.get("/", response_class=HTMLResponse)
def sessions_page(request: Request) -> HTMLResponse:
    sessions = [e.summary("") for e in catalog(request).sessions()]
    live, live_error = [], None
    clusters = live_clusters(request)
    if clusters.enabled:
        try:
            live = [r.to_dict() for r in visible_rows(request, clusters, "")]
        except KubernetesUnavailable as e:  # the archive still answers: say what is wrong, show the rest
            live_error = str(e)
    context = {
        "sessions": sessions,
        "archive": services.of(request).store.url,
        "live_enabled": clusters.enabled,
        "live": live,
        "live_error": live_error,
    }
    return templates.TemplateResponse(request, "sessions.html", context)


@router.get("/sessions/{session_id}/overview", response_class=HTMLResponse)
def overview_page(request: Request, session_id: str) -> HTMLResponse:
    entry = session_entry(request, session_id)
    context = {"o": session_overview(entry, services.of(request).warehouse.db(entry))}
    return templates.TemplateResponse(request, "session.html", context)


@router.get("/sessions/{session_id}/timeline", response_class=HTMLResponse)
def timeline_page(request: Request, session_id: str, job_id: str | None = None) -> HTMLResponse:
    entry = session_entry(request, session_id)
    db = services.of(request).warehouse.db(entry)
    jobs = [j["job_id"] for j in db.jobs() if j["job_id"]]
    context = {"s": entry.summary(""), "job_id": job_id, "jobs": jobs}
    return templates.TemplateResponse(request, "timeline.html", context)
