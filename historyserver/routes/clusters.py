"""A cluster's page (live RayCluster and past sessions), its JSON, the merged session list, and the live Ray
dashboard reached through this server. Every route passes the request's namespace authz first."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from historyserver import services
from historyserver.errors import HistoryError
from historyserver.live.cluster import cluster_path, cluster_view, last_session
from historyserver.live.kube import KubernetesUnavailable
from historyserver.live.listing import Filters, merged_rows, select
from historyserver.live.proxy import MAX_BODY, METHODS, BodyTooLarge, forward
from historyserver.live.ray_token import RayTokens
from historyserver.routes.deps import catalog
from historyserver.routes.live_api import live_clusters, visible_rows

router = APIRouter()


class ClusterNotFound(HistoryError):
    status = 404


def _not_found(namespace: str, name: str) -> ClusterNotFound:
    return ClusterNotFound(
        f"no cluster {namespace}/{name}: Kubernetes has no such RayCluster and the archive no session of it; "
        "GET /api/v1/clusters lists them"
    )


def _view(request: Request, namespace: str, name: str) -> dict:
    svc = services.of(request)
    found = cluster_view(live_clusters(request), catalog(request), namespace, name, svc.session_failures)
    if found is None:
        raise _not_found(namespace, name)
    return found


@router.get("/api/v1/clusters/{namespace}/{name}")
def get_cluster(request: Request, namespace: str, name: str) -> dict:
    return _view(request, namespace, name)


@router.get("/clusters/{namespace}/{name}", response_class=HTMLResponse)
def cluster_page(request: Request, namespace: str, name: str) -> HTMLResponse:
    from historyserver.routes.pages import templates

    return templates.TemplateResponse(request, "cluster.html", {"c": _view(request, namespace, name)})


def listing(request: Request, filters: Filters) -> dict:
    """Live clusters and archived sessions, merged (routes/pages.py renders the same dict)."""
    filters.check()
    live = live_clusters(request)
    rows, live_error = [], None
    if live.enabled:
        try:
            rows = visible_rows(request, live, "")
        except KubernetesUnavailable as e:  # the archive still answers: say what is wrong, show the rest
            live_error = str(e)
    page = select(merged_rows(rows, catalog(request).sessions()), filters)
    return {**page, "live_enabled": live.enabled, "live_error": live_error}


@router.get("/api/v1/clusters")
def list_clusters(
    request: Request,
    namespace: str | None = None,
    cluster: str | None = None,
    status: str | None = None,
    since: int | None = None,
    until: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict:
    return listing(request, Filters(namespace, cluster, status, since, until, limit, offset))


def live_root(namespace: str, name: str) -> RedirectResponse:
    # Ray's index.html loads ./static/...: without the slash it would resolve outside the prefix.
    return RedirectResponse(f"{cluster_path(namespace, name)}/live/", status_code=308)


for _method in METHODS:  # one route per method: each its own operationId in the OpenAPI schema
    router.add_api_route("/clusters/{namespace}/{name}/live", live_root, methods=[_method])


async def live_dashboard(request: Request, namespace: str, name: str, path: str) -> Response:
    from starlette.concurrency import run_in_threadpool

    view = catalog(request)
    if not view.allows(namespace):
        raise _not_found(namespace, name)
    live = live_clusters(request)
    found = await run_in_threadpool(live.cluster, namespace, name) if live.enabled else None
    if found is None or not found[0].dashboard_url:
        last = await run_in_threadpool(last_session, view, namespace, name)
        if last is None:
            if found is not None:
                raise KubernetesUnavailable(f"the RayCluster {namespace}/{name} has no head service yet; try again")
            raise _not_found(namespace, name)
        # Gone: its last session's archived dashboard, at the same path, so the UI's own calls keep answering.
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/sessions/{last.ref.id}/{path}{query}", status_code=307)
    row, obj = found
    tokens = _tokens(request)
    token = await run_in_threadpool(tokens.token, namespace, obj)
    declared = request.headers.get("content-length") or "0"
    if not declared.isdigit() or int(declared) > MAX_BODY:
        raise BodyTooLarge(f"Content-Length {declared!r}: the proxy forwards bodies of at most {MAX_BODY} bytes")
    body = await request.body() if request.method == "POST" else b""
    upstream = await forward(
        row.dashboard_url,
        path,
        request.url.query,
        request.method,
        dict(request.headers),
        body,
        token,
        f"{cluster_path(namespace, name)}/live",
    )
    return StreamingResponse(upstream.body, status_code=upstream.status, headers=upstream.headers)


for _method in METHODS:
    router.add_api_route("/clusters/{namespace}/{name}/live/{path:path}", live_dashboard, methods=[_method])


def _tokens(request: Request) -> RayTokens:
    state = request.app.state
    tokens = getattr(state, "ray_tokens", None)
    if tokens is None or tokens.live is not services.of(request).live:
        tokens = state.ray_tokens = RayTokens(services.of(request).live)
    return tokens
