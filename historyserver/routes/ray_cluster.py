"""The rest of what Ray's web UI calls on each page load and on its Overview and Cluster pages, in Ray's shapes.

A dead cluster has no Grafana, no profiler and no live process stats: those routes answer the way Ray does when
the service is absent, so the UI hides what it cannot show instead of failing.
"""

from __future__ import annotations

import re
from importlib.util import find_spec
from pathlib import Path

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from archive.api_snapshots import CLUSTER_STATUS_ROUTES
from historyserver.catalog import SessionEntry
from historyserver.errors import EntityNotFound
from historyserver.queries import cluster
from historyserver.queries.session_db import SessionDB
from historyserver.routes import grafana
from historyserver.routes.deps import SESSION_PREFIX, ray_ok, session_db, session_entry

router = APIRouter(prefix=SESSION_PREFIX)

RAY_API_VERSION = "4"  # ray.dashboard.modules.version.CURRENT_VERSION in Ray 2.60


def _not_found(msg: str) -> JSONResponse:
    return JSONResponse({"result": False, "msg": msg, "data": None}, status_code=404)


@router.get("/api/authentication_mode")
def authentication_mode(session_id: str, request: Request) -> dict:
    session_entry(request, session_id)
    # Not Ray's token auth: this server authenticates every request itself (routes/access.py) before Ray's UI loads.
    return {"authentication_mode": "disabled"}


@router.get("/api/grafana_health")
def grafana_health(session_id: str, request: Request) -> dict:
    entry = session_entry(request, session_id)
    served = grafana.health(request, entry)
    if served is not None:  # Grafana, or this server drawing the archived dashboards: the session's whole life
        return served
    # Ray's body when Grafana is unreachable (the UI then hides every panel): no Grafana is configured and the
    # session has no archived dashboard to draw. Status 200, not Ray's 500: for an archived session this is an
    # expected state, not a server fault, and the UI reads only `result`.
    return {
        "result": False,
        "msg": "Grafana healthcheck failed",
        "data": {"exception": "no Grafana is configured and this session has no archived Ray dashboard to draw"},
    }


@router.get("/api/prometheus_health")
def prometheus_health(session_id: str, request: Request) -> dict:
    session_entry(request, session_id)
    # Our Prometheus API (/sessions/{id}/prometheus/api/v1/) answers every session from the archive.
    return {"result": True, "msg": "prometheus running", "data": {}}


@router.get("/timezone")
def timezone_info(session_id: str, request: Request) -> dict:
    session_entry(request, session_id)
    # The cluster's time zone is not archived. This is Ray's answer for an unknown zone: the UI then shows
    # times in the viewer's own zone.
    return {"offset": None, "value": None}


@router.get("/usage_stats_enabled")
def usage_stats_enabled(session_id: str, request: Request) -> dict:
    session_entry(request, session_id)
    return ray_ok({"usageStatsEnabled": False, "usageStatsPromptEnabled": False}, "Fetched usage stats enabled")


@router.get("/api/version")
def version(entry: SessionEntry = Depends(session_entry)) -> dict:
    m = entry.manifest
    return {
        "version": RAY_API_VERSION,
        "ray_version": m.ray_version,
        "ray_commit": _ray_commit(m.ray_version),
        "session_name": m.session_name,
    }


@router.get("/api/v0/cluster_metadata")
def cluster_metadata(entry: SessionEntry = Depends(session_entry)) -> dict:
    # The fields Ray records when usage stats are off; the Python version is not archived.
    return ray_ok({"rayVersion": entry.manifest.ray_version, "pythonVersion": None, "rayInitCluster": False})


@router.get("/api/profiling_enabled")
def profiling_enabled(session_id: str, request: Request) -> dict:
    session_entry(request, session_id)
    # A dead cluster has no process to profile.
    return ray_ok(
        {
            "profilingEnabled": False,
            "profilingDefaults": {
                "native": False,
                "subprocesses": False,
                "idle": False,
                "leaks": False,
                "tracePythonAllocators": False,
                "cpuDuration": 5,
                "memoryDuration": 10,
                "maxDuration": 60,
                "cpuFormat": "flamegraph",
                "memoryFormat": "flamegraph",
                "pyspyNativeSupported": False,
            },
        }
    )


@router.get("/nodes")
def nodes(
    view: str | None = None, entry: SessionEntry = Depends(session_entry), db: SessionDB = Depends(session_db)
) -> dict:
    summary = cluster.node_summaries(db, entry.ended, entry.manifest.end_ms)
    if view == "hostNameList":
        return ray_ok(
            {"hostNameList": [n["hostname"] for n in summary if n["raylet"]["state"] == "ALIVE"]},
            "Node hostname list fetched.",
        )
    # nodeLogicalResources comes from the autoscaler's live load report: Ray leaves nodes without one out.
    return ray_ok({"summary": summary, "nodeLogicalResources": {}}, "Node summary fetched.")


@router.get("/nodes/{node_id}")
def node(node_id: str, entry: SessionEntry = Depends(session_entry), db: SessionDB = Depends(session_db)) -> dict:
    detail = cluster.node_detail(db, node_id, entry.ended, entry.manifest.end_ms)
    if detail is None:
        raise EntityNotFound(f"Node {node_id} does not exist in this session; GET nodes?view=summary lists them")
    return ray_ok({"detail": detail}, "Node details fetched.")


@router.get("/api/cluster_status")
def cluster_status(
    format: str = "0", entry: SessionEntry = Depends(session_entry), db: SessionDB = Depends(session_db)
) -> dict:
    # The head collector's last snapshot of Ray's own answer, when it holds a status (a cluster without an
    # autoscaler report answers "No cluster status", and what the archive knows says more than that).
    snapshots = db.info.get("cluster_status") or {}
    formatted = (snapshots.get(CLUSTER_STATUS_ROUTES[1]) or {}).get("body") or {}
    wanted = snapshots.get(CLUSTER_STATUS_ROUTES[1 if format == "1" else 0])
    if wanted and "Node status" in str((formatted.get("data") or {}).get("clusterStatus") or ""):
        return wanted["body"]
    if format == "1":
        text = cluster.formatted_status(db, entry.ended, entry.manifest.end_ms)
        return ray_ok({"clusterStatus": text}, "Got formatted cluster status.")
    # No snapshot archived: Ray's answer when the autoscaler has published none.
    return ray_ok({"autoscalingStatus": None, "autoscalingError": None, "clusterStatus": None}, "Got cluster status.")


@router.get("/events")
def events(
    request: Request,
    job_id: str | None = None,
    entry: SessionEntry = Depends(session_entry),
    db: SessionDB = Depends(session_db),
) -> dict:
    by_job = cluster.cluster_events(db)
    if job_id is None:
        return ray_ok({"events": by_job}, "All events fetched.")
    return ray_ok({"jobId": job_id, "events": by_job.get(job_id, [])}, "Job events fetched.")


def platform_events(session_id: str, request: Request) -> Response:
    session_entry(request, session_id)
    # Ray answers 404 when no platform (Kubernetes) event provider runs; the UI then hides platform events.
    return _not_found("platform events are not archived")


for _method in ("GET", "HEAD"):  # one route per method: each its own operationId in the OpenAPI schema
    router.add_api_route("/api/v0/platform_events", platform_events, methods=[_method])


@router.get("/api/serve/applications/")
def serve_applications(session_id: str, request: Request) -> Response:
    session_entry(request, session_id)
    return _not_found("Ray Serve state is not archived")


@router.get("/api/data/datasets/{job_id}")
def datasets(job_id: str, session_id: str, request: Request) -> Response:
    session_entry(request, session_id)
    return _not_found(f"Ray Data dataset state of job {job_id} is not archived")


def _ray_commit(ray_version: str | None) -> str | None:
    """The commit of the installed Ray, if it is the version the session ran (read from its _version.py without
    importing Ray, which is slow); None otherwise: the archive does not record it."""
    spec = find_spec("ray")
    if not ray_version or spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(spec.submodule_search_locations[0]) / "_version.py").read_text()
    except OSError:
        return None
    found = dict(re.findall(r'^(version|commit)\s*=\s*"([^"]*)"', text, re.M))
    return found.get("commit") if found.get("version") == ray_version else None
