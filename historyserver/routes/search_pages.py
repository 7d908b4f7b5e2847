"""The search pages: one session's logs, and across sessions. The page is a form whose URL is the whole state;
search.js asks the JSON API (routes/search_api.py) with the same parameters and draws hits, facets and the chart."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from historyserver.routes.deps import catalog, session_entry
from historyserver.routes.pages import templates

router = APIRouter()

FILTERS = ("node_id", "file", "job_id", "level")  # repeatable
SINGLE = ("q", "mode", "since", "until")
ACROSS = ("cluster", "namespace", "session")


def _state(request: Request, names: tuple[str, ...]) -> dict[str, Any]:
    params = request.query_params
    state: dict[str, Any] = {name: params.get(name, "") for name in SINGLE + names}
    state["mode"] = "regex" if state["mode"] == "regex" else "terms"
    for name in FILTERS:
        state[name] = [v for v in params.getlist(name) if v]
    return state


@router.get("/search", response_class=HTMLResponse)
def search_all_page(request: Request) -> HTMLResponse:
    sessions = [e.summary("") for e in catalog(request).sessions()]
    context = {
        "s": None,
        "state": _state(request, ACROSS),
        "api": "/api/v1/logs/search",
        "clusters": sorted({s["cluster"] for s in sessions if s["cluster"]}),
        "namespaces": sorted({s["namespace"] for s in sessions if s["namespace"]}),
    }
    return templates.TemplateResponse(request, "search.html", context)


@router.get("/sessions/{session_id}/search", response_class=HTMLResponse)
def search_session_page(request: Request, session_id: str) -> HTMLResponse:
    entry = session_entry(request, session_id)
    s = entry.summary("")
    context = {
        "s": s,
        "state": _state(request, ()),
        "api": f"/api/v1/sessions/{s['id']}/logs/search",
        "clusters": [],
        "namespaces": [],
    }
    return templates.TemplateResponse(request, "search.html", context)
