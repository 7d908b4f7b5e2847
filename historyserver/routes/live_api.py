"""Our own JSON API: the live RayClusters, RayJobs and RayServices, linked to their archived sessions."""

from __future__ import annotations

from fastapi import APIRouter, Request

from historyserver import services
from historyserver.live.kube import LiveClusters, LiveRow
from historyserver.routes.deps import access, catalog

router = APIRouter(prefix="/api/v1")


def live_clusters(request: Request) -> LiveClusters:
    """The app's LiveClusters (create_app builds it from --kubernetes and its companions)."""
    live: LiveClusters = services.of(request).live
    return live


@router.get("/live")
def list_live(request: Request) -> dict:
    live = live_clusters(request)
    if not live.enabled:
        return {"enabled": False, "namespaces": None, "clusters": []}
    base = str(request.base_url).rstrip("/")
    rows = visible_rows(request, live, base)
    allows = access(request).allows
    return {
        "enabled": True,
        # None: every namespace (that this request may see)
        "namespaces": [n for n in live.settings.namespaces if allows(n)] if live.settings.namespaces else None,
        "clusters": [r.to_dict() for r in rows],
    }


def visible_rows(request: Request, live: LiveClusters, base_url: str) -> list[LiveRow]:
    """The live objects of the namespaces this request may see, each linked to the sessions it may see."""
    allows = access(request).allows
    return [r for r in live.list(catalog(request), base_url) if allows(r.namespace)]
