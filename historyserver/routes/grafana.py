"""Ray's Metrics tab and Overview charts for an archived session: its Grafana settings, and the panels themselves.

Ray's web UI embeds Grafana panels as iframes at `{grafanaHost}/d/<uid>/...?...&from=now-5m&to=now` (the range is
hard-coded relative to now). For a dead session that shows nothing, so the `grafanaHost` we announce is a path of
this server, `/sessions/{id}/grafana`. With `--grafana-url` it redirects to that Grafana with every parameter kept
except `from`/`to` (the session's start and end, in ms) and `var-datasource` (the archive's datasource). Without
one, it draws the panel (`d-solo/<uid>?panelId=N`) or the dashboard (`d/<uid>`) itself: the session's own archived
dashboard, its queries answered by our Prometheus API over the session's whole life (historyserver/panels.py,
pages/static/panels.js).
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from historyserver import panels, services
from historyserver.catalog import SessionEntry
from historyserver.errors import BadRequest, EntityNotFound
from historyserver.queries import dashboards
from historyserver.routes import live_prometheus
from historyserver.routes.deps import SESSION_PREFIX, session_entry
from historyserver.routes.pages import templates

router = APIRouter(prefix=SESSION_PREFIX)

# The uids of the dashboards Ray 2.60 generates (their `uid` fields), under the keys Ray's grafana_health uses
# (camelCased by Ray's response helper, as the UI reads them).
DASHBOARD_UIDS = {
    "default": "rayDefaultDashboard",
    "serve": "rayServeDashboard",
    "serveDeployment": "rayServeDeploymentDashboard",
    "serveLlm": "rayServeLlmDashboard",
    "serveLlmSglang": "rayServeLlmSglangDashboard",
    "data": "rayDataDashboard",
    "dataLlm": "rayDataLlmDashboard",
    "train": "rayTrainDashboard",
}
DASHBOARD_PATHS = ("d/", "d-solo/")


def grafana_host(request: Request, session_id: str) -> str:
    """Where the UI should send its iframes: our redirect, as a path (valid whatever host the user reached)."""
    return f"{request.scope.get('root_path', '')}/sessions/{session_id}/grafana"


def health(request: Request, entry: SessionEntry) -> dict | None:
    """Ray's `grafana_health` body when a Grafana is configured or this server draws the session's archived
    dashboards itself; None when neither (no Grafana, and the session has no archived dashboard)."""
    settings = services.of(request).settings
    uids = DASHBOARD_UIDS
    if not settings.grafana_url:
        archived = set(dashboards.session_dashboards(services.of(request).store, entry, settings.grafana_datasource))
        if DASHBOARD_UIDS["default"] not in archived:
            return None
        uids = {key: uid for key, uid in DASHBOARD_UIDS.items() if uid in archived}  # the UI offers only these
    m = entry.manifest
    return {
        "result": True,
        "msg": "Grafana running",
        "data": {
            "grafanaHost": grafana_host(request, entry.ref.id),
            "grafanaOrgId": "1",
            "sessionName": m.session_name,
            "dashboardUids": uids,
            "dashboardDatasource": settings.grafana_datasource,
            # Ray's dashboards filter `ray_io_cluster=~"$Cluster"`: the UI adds `var-Cluster` from this.
            "grafanaClusterFilter": m.cluster,
        },
    }


def session_range_ms(entry: SessionEntry) -> tuple[int, int | None]:
    """The session's start and end; None for the end of a running session (Grafana's `now`)."""
    m = entry.manifest
    start = m.start_ms if m.start_ms is not None else int(time.time() * 1000)
    return start, entry.end_ms


@router.get("/grafana/{rest:path}", include_in_schema=False)
def dashboard_or_redirect(session_id: str, rest: str, request: Request) -> Response:
    entry = session_entry(request, session_id)
    settings = services.of(request).settings
    if not rest.startswith(DASHBOARD_PATHS):
        raise EntityNotFound(f"only Grafana dashboards (d/<uid>, d-solo/<uid>?panelId=) are served here, not {rest!r}")
    if not settings.grafana_url:
        return _draw(request, entry, rest)
    start, end = session_range_ms(entry)
    live = live_prometheus.live_url(request, entry) is not None  # a running session, and a live Prometheus
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("from", "to", "var-datasource")]
    if not any(k == "var-SessionName" for k, _ in params):
        params.append(("var-SessionName", entry.manifest.session_name))
    params += [
        ("from", str(start)),
        ("to", "now" if end is None else str(end)),
        ("var-datasource", settings.grafana_live_datasource if live else settings.grafana_datasource),
    ]
    return RedirectResponse(f"{settings.grafana_url.rstrip('/')}/{rest}?{urlencode(params)}", status_code=307)


def _draw(request: Request, entry: SessionEntry, rest: str) -> Response:
    """Our page drawing a panel or a dashboard of the session's archived dashboards (no Grafana configured)."""
    solo = rest.startswith("d-solo/")
    uid = rest.split("/")[1] if "/" in rest else ""
    q = request.query_params
    panel_id: int | None = None
    if solo:
        try:
            panel_id = int(q.get("panelId", ""))
        except ValueError:
            raise BadRequest(
                f"panelId must be a panel's number, not {q.get('panelId')!r}: /d-solo/<uid>?panelId=N"
            ) from None
    settings = services.of(request).settings
    board = dashboards.session_dashboard(services.of(request).store, entry, uid, settings.grafana_datasource)
    url_vars: dict[str, list[str]] = {}
    for key, value in q.multi_items():
        if key.startswith("var-"):
            url_vars.setdefault(key[4:], []).append(value)
    url_vars.setdefault("SessionName", [entry.manifest.session_name])
    start, end = session_range_ms(entry)
    end_ms = end if end is not None else int(time.time() * 1000)
    try:
        spec = panels.render_context(board, url_vars, start, end_ms, panel_id)
    except panels.PanelNotFound as e:
        raise EntityNotFound(str(e)) from None
    live = live_prometheus.live_url(request, entry)
    context = {
        "spec": spec,
        "live": live is not None,
        "refresh": q.get("refresh", ""),
        "solo": solo,
        "kiosk": "kiosk" in q,
        "theme": "dark" if q.get("theme") == "dark" else "light",
        # A running session's charts read the live Prometheus when there is one; any other, the archive.
        "api": live or f"{request.scope.get('root_path', '')}/sessions/{entry.ref.id}/prometheus/api/v1",
        "session": entry.summary(""),
        "running": end is None,
    }
    return templates.TemplateResponse(request, "panels.html", context)
