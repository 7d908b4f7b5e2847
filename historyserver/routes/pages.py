"""Our own HTML pages (Jinja2): each view builds one dict and renders it."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

router = APIRouter()
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "pages" / "templates"))
templates.env.filters["ms_time"] = lambda v: (
    datetime.fromtimestamp(v / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if v else ""
)


@router.get("/", response_class=HTMLResponse)
def sessions_page(request: Request) -> HTMLResponse:
    sessions = [e.summary("") for e in request.app.state.catalog.sessions()]
    context = {"sessions": sessions, "archive": request.app.state.store.url}
    return templates.TemplateResponse(request, "sessions.html", context)


@router.get("/sessions/{session_id}/overview", response_class=HTMLResponse)
def session_page(request: Request, session_id: str) -> HTMLResponse:
    entry = request.app.state.catalog.get(session_id)
    db = request.app.state.warehouse.db(entry)
    context = {"s": entry.summary(""), "jobs": db.jobs(), "damage": db.info.get("damage", {})}
    return templates.TemplateResponse(request, "session.html", context)
