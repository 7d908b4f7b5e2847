"""Our log view: an archived file at one line (the target of every search hit), with the task or actor that printed
it. HTML; the data is the context API's (GET /api/v1/sessions/{id}/logs/context)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from historyserver import services
from historyserver.errors import BadRequest
from historyserver.routes.deps import session_entry
from historyserver.routes.pages import templates
from historyserver.search.backends import search_backend
from historyserver.search.log_index import SEARCH_TABLES
from historyserver.search.log_view import log_view

router = APIRouter()


@router.get("/sessions/{session_id}/logs/view", response_class=HTMLResponse)
def log_view_page(
    request: Request, session_id: str, node_id: str | None = None, file: str | None = None, line: int = Query(1, ge=1)
) -> HTMLResponse:
    entry = session_entry(request, session_id)  # first: an invisible session answers as an unknown one
    if not node_id or not file:
        raise BadRequest("give node_id and file: the view shows one archived file (search hits link here)")
    svc = services.of(request)
    with svc.gates.searches.slot():
        tables = Path(svc.warehouse.db(entry, needs=SEARCH_TABLES).dir)
        view = log_view(search_backend(svc), entry.ref, tables, node_id, file, line)
    return templates.TemplateResponse(request, "log_view.html", {"v": view})
