"""Our own JSON API: the live RayClusters, RayJobs and RayServices, linked to their archived sessions."""

from __future__ import annotations

from fastapi import APIRouter, Request

from historyserver.live.kube import LiveClusters

router = APIRouter(prefix="/api/v1")


def live_clusters(request: Request) -> LiveClusters:
    """The app's LiveClusters, built from the environment on first use when the app was not given one."""
    live = getattr(request.app.state, "live", None)
    if live is None:
        live = request.app.state.live = LiveClusters.from_env()
    return live


@router.get("/live")
def list_live(request: Request) -> dict:
    live = live_clusters(request)
    if not live.enabled:
        return {"enabled": False, "namespaces": None, "clusters": []}
    base = str(request.base_url).rstrip("/")
    rows = live.list(request.app.state.catalog, base)
    return {
        "enabled": True,
        "namespaces": list(live.settings.namespaces) or None,  # None: every namespace
        "clusters": [r.to_dict() for r in rows],
    }
