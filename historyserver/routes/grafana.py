"""Ray's Metrics tab for an archived session: its Grafana settings, and a redirect that fixes the time range.

Ray's web UI embeds Grafana panels as iframes at `{grafanaHost}/d/<uid>/...?...&from=now-5m&to=now` (the range is
hard-coded relative to now). For a dead session that shows nothing, so the `grafanaHost` we announce is a path of
this server, `/sessions/{id}/grafana`, which redirects to the configured Grafana with every parameter kept except
`from`/`to` (the session's start and end, in ms) and `var-datasource` (the archive's datasource).
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from historyserver import services
from historyserver.catalog import SessionEntry
from historyserver.errors import EntityNotFound
from historyserver.routes.deps import SESSION_PREFIX, session_entry

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
    """Ray's `grafana_health` body when a Grafana is configured, else None."""
    settings = services.of(request).settings
    if not settings.grafana_url:
        return None
    m = entry.manifest
    return {
        "result": True,
        "msg": "Grafana running",
        "data": {
            "grafanaHost": grafana_host(request, entry.ref.id),
            "grafanaOrgId": "1",
            "sessionName": m.session_name,
            "dashboardUids": DASHBOARD_UIDS,
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
def redirect(session_id: str, rest: str, request: Request) -> RedirectResponse:
    entry = session_entry(request, session_id)
    settings = services.of(request).settings
    if not settings.grafana_url:
        raise EntityNotFound("no Grafana is configured for this history server: start it with --grafana-url")
    if not rest.startswith(DASHBOARD_PATHS):
        raise EntityNotFound(f"only Grafana dashboards (d/..., d-solo/...) are redirected, not {rest!r}")
    start, end = session_range_ms(entry)
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("from", "to", "var-datasource")]
    if not any(k == "var-SessionName" for k, _ in params):
        params.append(("var-SessionName", entry.manifest.session_name))
    params += [
        ("from", str(start)),
        ("to", "now" if end is None else str(end)),
        ("var-datasource", settings.grafana_datasource),
    ]
    return RedirectResponse(f"{settings.grafana_url.rstrip('/')}/{rest}?{urlencode(params)}", status_code=307)
