"""`/sessions/{id}/live/prometheus/api/v1/{query,query_range}`: a running session's live charts, read from the
cluster's own Prometheus (`--prometheus-url`) through historyserver/live/prometheus.py, in Prometheus's envelope.

A session that is not running (ended, or unfinished: its collector went silent) has no live endpoint: its charts
always read the archive (`/sessions/{id}/prometheus/api/v1/`), so what a dead session shows never changes.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from historyserver import services
from historyserver.catalog import RUNNING, SessionEntry
from historyserver.errors import EntityNotFound, HistoryError
from historyserver.live import prometheus as live_prometheus
from historyserver.promql.errors import PromQLError
from historyserver.routes.deps import namespaces_named, session_entry
from historyserver.routes.prometheus_api import error, history_error
from historyserver.routes.prometheus_params import Params

LIVE_PREFIX = "/sessions/{session_id}/live/prometheus/api/v1"
router = APIRouter(prefix=LIVE_PREFIX)


def live_url(request: Request, entry: SessionEntry) -> str | None:
    """The live Prometheus API base a session's charts read, or None (not running, or no --prometheus-url)."""
    if not services.of(request).settings.prometheus_url or entry.status != RUNNING:
        return None
    return f"{request.scope.get('root_path', '')}{LIVE_PREFIX.format(session_id=entry.ref.id)}"


def _answer(request: Request, session_id: str, endpoint: str, p: Params) -> Response:
    entry = session_entry(request, session_id)
    settings = services.of(request).settings
    if live_url(request, entry) is None:
        why = "no --prometheus-url is set" if not settings.prometheus_url else f"the session is {entry.status}"
        raise EntityNotFound(
            f"session {session_id} has no live charts ({why}); its charts read the archive at "
            f"/sessions/{session_id}/prometheus/api/v1/"
        )
    params = live_prometheus.forwarded_params(endpoint, p, int(time.time() * 1000), settings.query_timeout_s)
    m = entry.manifest
    if live_prometheus.check_session_only(p.get("query"), m.session_name, m.cluster):
        # Every namespace the archive knows, not only those this user may see: the other cluster is the one at risk.
        live_prometheus.check_cluster_name_unique(m.cluster, m.namespace, namespaces_named(request, m.cluster))
    with services.of(request).gates.queries.slot():
        got = live_prometheus.ask(
            settings.prometheus_url, endpoint, params, settings.query_timeout_s, settings.prometheus_authorization_file
        )
    if not got.content_type.startswith("application/json"):
        return error(502, "unavailable", f"the live Prometheus answered HTTP {got.status} without its JSON envelope")
    return Response(got.body, status_code=got.status, media_type="application/json")


def _handler(endpoint: str):
    async def handle(session_id: str, request: Request) -> Response:
        body = await request.body() if request.method == "POST" else b""
        p = Params(request.query_params.multi_items(), body, request.headers.get("content-type", ""))
        try:
            return await run_in_threadpool(_answer, request, session_id, endpoint, p)
        except PromQLError as e:
            return error(e.status, e.error_type, str(e))
        except HistoryError as e:
            return history_error(e)

    handle.__name__ = f"live_prometheus_{endpoint.strip('/')}"
    return handle


for _endpoint in live_prometheus.ENDPOINTS:
    for _method in ("GET", "POST"):  # one route per method: each its own operationId in the OpenAPI schema
        router.add_api_route(
            _endpoint,
            _handler(_endpoint),
            methods=[_method],
            tags=["prometheus"],
            summary=f"{_method} {_endpoint} of a running session, from the live Prometheus (--prometheus-url)",
        )
