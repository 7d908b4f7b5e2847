"""The part of Prometheus's HTTP API that Grafana's Prometheus datasource uses, over the archive's metrics.

Three mount points, one per scope: `/prometheus/api/v1/` (the whole archive), `/sessions/{id}/prometheus/api/v1/`
(one session) and `/clusters/{namespace}/{cluster}/prometheus/api/v1/` (a cluster across its sessions). Inside a
scope, a query reads only the sessions its `SessionName`/`ray_io_cluster` matchers and time range can touch
(queries/metrics_scope.py). Every endpoint answers GET and form-encoded POST, in Prometheus's envelope
`{"status": "success", "data": ...}`; every error, an unknown session included, in Prometheus's
`{"status": "error", "errorType", "error"}` with its status codes (400 bad_data, 404 not_found, 422 execution,
503 timeout or unavailable).

A running session is read from the provisional tables the warehouse rebuilds at most every `--running-refresh`
seconds from what its collectors have uploaded so far (every `--interval` seconds): its last minutes may be
missing. Live panels belong to the cluster's own Prometheus; this API is for what the archive holds.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from historyserver import services
from historyserver.catalog import SessionEntry
from historyserver.errors import ArchiveUnavailable, HistoryError, Overloaded, SessionNotFound, TooLarge
from historyserver.promql.errors import BadData, PromQLError, QueryTimeout
from historyserver.queries.metrics_scope import ArchiveStore
from historyserver.queries.session_series import FailureCache
from historyserver.routes.deps import catalog as visible_catalog
from historyserver.routes.prometheus_params import (
    LABEL_NAME,
    MAX_TIME_MS,
    MIN_TIME_MS,
    Params,
    check_timeout,
    go_quote,
    match_sets,
    range_params,
    time_param,
)

router = APIRouter()
log = logging.getLogger("rayhistory.prometheus_api")

ARCHIVE_PREFIX = "/prometheus/api/v1"
SESSION_PREFIX = "/sessions/{session_id}/prometheus/api/v1"
CLUSTER_PREFIX = "/clusters/{namespace}/{cluster}/prometheus/api/v1"
PREFIXES = (ARCHIVE_PREFIX, SESSION_PREFIX, CLUSTER_PREFIX)

# The Prometheus whose PromQL semantics the engine reproduces (the oracle tests compare with it); Grafana reads
# `version` to decide which API features it may use.
BUILD_INFO = {
    "version": "2.42.0",
    "revision": "rayhistory",
    "branch": "HEAD",
    "buildUser": "rayhistory",
    "buildDate": "20230201-00:00:00",
    "goVersion": "go1.19.5",
}


# -- envelopes ----------------------------------------------------------------------------------------------------


class RawJSON(bytes):
    """A whole success answer already encoded (a query result: QueryResult.to_json_chunks builds large matrices
    several times faster than json.dumps of the same values, and encoded piece by piece it is copied once)."""

    @classmethod
    def success(cls, chunks: Iterable[str]) -> RawJSON:
        return cls(b"".join([b'{"status":"success","data":', *(c.encode() for c in chunks), b"}"]))


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), allow_nan=False), status_code=status, media_type="application/json"
    )


def success(data: Any) -> Response:
    if isinstance(data, RawJSON):
        return Response(data, media_type="application/json")
    return _json({"status": "success", "data": data})


def error(status: int, error_type: str, message: str, retry_after: int | None = None) -> Response:
    response = _json({"status": "error", "errorType": error_type, "error": message}, status)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


def is_prometheus_path(path: str) -> bool:
    """Whether a request path belongs to this API family (for the app's exception handlers)."""
    return "/prometheus/api/v1" in path


def history_error(exc: HistoryError) -> Response:
    if isinstance(exc, SessionNotFound) or exc.status == 404:
        return error(404, "not_found", str(exc))
    if isinstance(exc, (ArchiveUnavailable, Overloaded)) or exc.status == 503:  # also the Kubernetes API (--authz)
        return error(503, "unavailable", str(exc), getattr(exc, "retry_after", None))
    if exc.status == 502:  # a server behind this one failed us (the live Prometheus refused our credentials)
        return error(502, "unavailable", str(exc))
    if isinstance(exc, TooLarge):
        return error(422, "execution", str(exc))
    if exc.status == 400:
        return error(400, "bad_data", str(exc))
    return error(exc.status, "internal", str(exc))


# -- scopes -------------------------------------------------------------------------------------------------------


def scope_entries(request: Request) -> list[SessionEntry]:
    """The sessions of the request's mount point (looked up once per request, before its parameters: an unknown
    session is a 404 whatever else is wrong)."""
    cached = getattr(request.state, "prometheus_scope", None)
    if cached is None:
        cached = request.state.prometheus_scope = _lookup_scope(request)
    return cached


def _lookup_scope(request: Request) -> list[SessionEntry]:
    catalog = visible_catalog(request)  # sessions of namespaces the request may not see never load
    path = request.path_params
    if "session_id" in path:
        return [catalog.get(path["session_id"])]
    if "cluster" in path:
        ns, cluster = path["namespace"], path["cluster"]
        entries = [e for e in catalog.sessions() if e.manifest.namespace == ns and e.manifest.cluster == cluster]
        if not entries:
            raise SessionNotFound(
                f"no session of cluster {cluster!r} in namespace {ns!r} in the archive; GET /api/v1/sessions lists them"
            )
        return entries
    return catalog.sessions()


def _failure_cache(request: Request) -> FailureCache:
    cache: FailureCache = services.of(request).session_failures  # built by create_app
    return cache


def scope_store(request: Request) -> ArchiveStore:
    warehouse = services.of(request).warehouse
    return ArchiveStore(
        scope_entries(request),
        lambda entry: warehouse.db(entry).dir,
        _failure_cache(request),
        max_sessions=services.of(request).settings.query_max_sessions,
        cache=services.of(request).metrics_cache,
    )


# -- endpoints (run in a worker thread: DuckDB and the engine are blocking) ---------------------------------------


def _engine(request: Request, store, p: Params):
    from historyserver.promql.engine import Engine  # imported when first used: the engine is a heavy module
    from historyserver.promql.limits import QueryLimits

    settings = services.of(request).settings
    limits = QueryLimits(settings.query_max_samples, settings.query_timeout_s)
    return Engine(store, limits=limits, timeout_s=check_timeout(p))


def _run_query(request: Request, run: Callable[[], Any]) -> RawJSON:
    from historyserver.promql.limits import TooManySamples

    limits = services.of(request).server_metrics.query_limits
    try:
        return RawJSON.success(run().to_json_chunks())
    except TooManySamples:
        limits.labels("max_samples").inc()
        raise
    except QueryTimeout:
        limits.labels("timeout").inc()
        raise
    except TooLarge:  # --query-max-sessions, raised as the engine opens the sessions' series
        limits.labels("max_sessions").inc()
        raise
    except BadData as e:
        msg = str(e)
        raise BadData(msg if msg.startswith("invalid parameter") else f'invalid parameter "query": {msg}') from None


def query(request: Request, p: Params) -> Any:
    t = time_param(p, "time", int(time.time() * 1000))
    check_timeout(p)
    expr = p.get("query")
    with services.of(request).gates.queries.slot():
        store = scope_store(request)
        try:
            return _run_query(request, lambda: _engine(request, store, p).instant(expr, t))
        finally:
            store.close()


def query_range(request: Request, p: Params) -> Any:
    start, end, step = range_params(p)
    expr = p.get("query")
    with services.of(request).gates.queries.slot():
        store = scope_store(request)
        try:
            return _run_query(request, lambda: _engine(request, store, p).range(expr, start, end, step))
        finally:
            store.close()


def _metadata_range(p: Params) -> tuple[int, int]:
    return time_param(p, "start", MIN_TIME_MS), time_param(p, "end", MAX_TIME_MS)


def labels(request: Request, p: Params) -> Any:
    start, end = _metadata_range(p)
    sets = match_sets(p)
    store = scope_store(request)
    try:
        return store.label_names(sets, start, end)
    finally:
        store.close()


def label_values(request: Request, p: Params) -> Any:
    name = request.path_params["name"]
    if not LABEL_NAME.match(name):
        raise BadData(f"invalid label name: {go_quote(name)}")
    start, end = _metadata_range(p)
    sets = match_sets(p)
    store = scope_store(request)
    try:
        return store.label_values(name, sets, start, end)
    finally:
        store.close()


def series(request: Request, p: Params) -> Any:
    if not p.getlist("match[]"):
        raise BadData("no match[] parameter provided")
    start, end = _metadata_range(p)
    sets = match_sets(p)
    store = scope_store(request)
    try:
        found = store.series(sets, start, end)
    finally:
        store.close()
    # Sorted as Prometheus sorts label sets, each with its names in order (Go writes a map's keys sorted).
    return [dict(items) for items in sorted(sorted(labels.items()) for labels in found)]


def metadata(request: Request, p: Params) -> Any:
    scope_entries(request)
    return {}  # HELP and TYPE lines are not compacted: Grafana then guesses types from metric names


def query_exemplars(request: Request, p: Params) -> Any:
    from historyserver.promql.parser import parse

    scope_entries(request)
    _metadata_range(p)
    parse(p.get("query"))
    return []  # exemplars are not archived


def format_query(request: Request, p: Params) -> Any:
    from historyserver.promql.parser import parse

    try:
        return parse(p.get("query")).prettify()
    except BadData as e:
        raise BadData(f'invalid parameter "query": {e}') from None


def buildinfo(request: Request, p: Params) -> Any:
    scope_entries(request)
    return BUILD_INFO


def rules(request: Request, p: Params) -> Any:
    return {"groups": []}  # no recording or alerting rules run over an archive


def alerts(request: Request, p: Params) -> Any:
    return {"alerts": []}


ENDPOINTS: dict[str, Callable[[Request, Params], Any]] = {
    "/query": query,
    "/query_range": query_range,
    "/labels": labels,
    "/label/{name}/values": label_values,
    "/series": series,
    "/metadata": metadata,
    "/query_exemplars": query_exemplars,
    "/format_query": format_query,
    "/status/buildinfo": buildinfo,
    "/rules": rules,
    "/alerts": alerts,
}


def _handler(fn: Callable[[Request, Params], Any]):
    async def handle(request: Request) -> Response:
        body = await request.body() if request.method == "POST" else b""
        p = Params(request.query_params.multi_items(), body, request.headers.get("content-type", ""))
        try:
            await run_in_threadpool(scope_entries, request)
            return success(await run_in_threadpool(fn, request, p))
        except PromQLError as e:
            return error(e.status, e.error_type, str(e))
        except HistoryError as e:
            return history_error(e)
        except Exception as e:  # a fault of ours: still in this API's shape, so Grafana shows the message
            log.exception("%s failed", request.url.path)
            return error(500, "internal", f"{type(e).__name__}: {e}")

    handle.__name__ = f"prometheus_{fn.__name__}"
    return handle


async def _unknown(request: Request) -> Response:
    return error(
        404,
        "not_found",
        f"no such endpoint of this Prometheus API: {request.url.path}; this server "
        f"answers {', '.join(sorted(ENDPOINTS))}",
    )


# -- OpenAPI: each endpoint's parameters as Prometheus defines them (the handlers read them from the request, so
# FastAPI cannot see them); /api/openapi.json then describes this API too, and the fuzz tests drive it from there.


def _string(name: str, description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "description": description, "required": required, "schema": {"type": "string"}}


_QUERY = _string("query", "PromQL expression", required=True)
_TIMEOUT = _string("timeout", "evaluation timeout (a duration); it can only shorten --query-timeout")
_MATCH = {
    "name": "match[]",
    "description": "series selector; repeated for several",
    "style": "form",
    "explode": True,
    "schema": {"type": "array", "items": {"type": "string"}},
}
_START = _string("start", "RFC 3339 or Unix seconds")
_END = _string("end", "RFC 3339 or Unix seconds")
PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "/query": [_QUERY, _string("time", "evaluation time: RFC 3339 or Unix seconds (default: now)"), _TIMEOUT],
    "/query_range": [
        _QUERY,
        {**_START, "required": True},
        {**_END, "required": True},
        _string("step", "resolution: a duration or float seconds", required=True),
        _TIMEOUT,
    ],
    "/labels": [_START, _END, _MATCH],
    "/label/{name}/values": [_START, _END, _MATCH],
    "/series": [{**_MATCH, "required": True}, _START, _END],
    "/metadata": [_string("metric", "metric name"), _string("limit", "maximum number of metrics")],
    "/query_exemplars": [_QUERY, _START, _END],
    "/format_query": [_QUERY],
}


def _openapi(prefix: str, path: str, method: str) -> dict[str, Any]:
    params = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
        for n in re.findall(r"{(\w+)}", prefix + path)
    ]
    own = PARAMETERS.get(path, [])
    if method == "GET" or not own:
        return {"parameters": params + [{**p, "in": "query"} for p in own]}
    form = {
        "type": "object",
        "properties": {p["name"]: p["schema"] for p in own},
        "required": [p["name"] for p in own if p.get("required")],
    }
    return {"parameters": params, "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": form}}}}


for _prefix in PREFIXES:
    for _path, _fn in ENDPOINTS.items():
        for _method in ("GET", "POST"):  # one route each: FastAPI gives each its own operationId
            router.add_api_route(
                _prefix + _path,
                _handler(_fn),
                methods=[_method],
                tags=["prometheus"],
                summary=f"{_method} {_path} (Prometheus HTTP API)",
                openapi_extra=_openapi(_prefix, _path, _method),
            )
    router.add_api_route(_prefix + "/{rest:path}", _unknown, methods=["GET", "POST"], include_in_schema=False)
