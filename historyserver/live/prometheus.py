"""Live charts: a running session's panel queries answered by the cluster's own Prometheus (`--prometheus-url`).

Only what the panels send (instant and range queries), and only about that session: every series selector of the
query must pin `SessionName` to the session's name or `ray_io_cluster` to its cluster (every query of Ray's Default,
Data, Train and Serve dashboards does), so a user who may see one session cannot read another cluster's series
through it. (The Data LLM dashboard's vLLM series carry neither label: those panels are refused live.) KubeRay's
`ray_io_cluster` is the cluster's name without its namespace, so a query pinned by it alone is refused when the
archive knows a cluster of that name in another namespace. Bounded like our own Prometheus API: at most 11,000 points per
series, the server's `--query-timeout` (sent to Prometheus as `timeout`, which it enforces, and as our own read
deadline), one of the `--max-concurrent-queries` slots while it runs, and an answer of at most MAX_ANSWER bytes,
read in chunks and refused whole beyond that. Prometheus's own answers, errors included, pass through as it sent
them: they are already in the API's envelope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from historyserver.errors import HistoryError, TooLarge
from historyserver.promql.errors import BadData
from historyserver.routes.prometheus_params import Params, check_timeout, range_params, time_param

MAX_ANSWER = 64 * 2**20  # a panel's matrix of a long session is a few MB; a runaway query is not
CONNECT_TIMEOUT = 5.0
MAX_AUTHORIZATION = 16 * 1024  # a header's value: tokens are a few KB at most (JWTs included)
ENDPOINTS = ("/query", "/query_range")


class PrometheusUnreachable(HistoryError):
    """The live Prometheus did not answer (answered 503, as Prometheus's `unavailable`)."""

    status = 503


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str


def forwarded_params(endpoint: str, p: Params, now_ms: int, timeout_s: float) -> list[tuple[str, str]]:
    """The parameters sent on, checked as our own API checks them (Prometheus's messages), with the timeout the
    shorter of the request's and the server's."""
    query = p.get("query")
    if not query:
        raise BadData('invalid parameter "query": no query given')
    own = check_timeout(p)
    timeout = min(own, timeout_s) if own else timeout_s
    if endpoint == "/query_range":
        start, end, step = range_params(p)
        times = [("start", _s(start)), ("end", _s(end)), ("step", _s(step))]
    else:
        times = [("time", _s(time_param(p, "time", now_ms)))]
    return [("query", query), *times, ("timeout", f"{timeout:g}s")]


def _s(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def check_session_only(query: str, session_name: str, cluster: str) -> bool:
    """Refuse a query with a series selector pinned neither to this session (`SessionName`, as the Default, Data
    and Train dashboards pin theirs) nor to its cluster (`ray_io_cluster`, as the Serve dashboards do). True when
    some selector is pinned by the cluster's name alone, which KubeRay's monitors give without its namespace."""
    import promql_parser as pp

    from historyserver.promql.parser import parse

    allowed = {"SessionName": _literals(session_name), "ray_io_cluster": _literals(cluster)}
    try:
        tree = parse(query)
    except BadData as e:
        raise BadData(f'invalid parameter "query": {e}') from None
    by_cluster_only = False
    for vs in _selectors(tree, pp):
        pins = {
            m.name
            for m in vs.matchers.matchers
            if str(m.op) in ("MatchOp.Equal", "MatchOp.Re") and m.value in allowed.get(m.name, ())
        }
        by_cluster_only |= pins == {"ray_io_cluster"}
        if not pins:
            raise BadData(
                f'invalid parameter "query": the selector {vs} pins neither SessionName to "{session_name}" nor '
                f'ray_io_cluster to "{cluster}"; a running session\'s live charts answer only queries about it'
            )
    return by_cluster_only


def check_cluster_name_unique(cluster: str, namespace: str, namespaces_of_name: set[str]) -> None:
    """A selector pinned by `ray_io_cluster` alone reads every cluster of that name: refused when the archive knows
    one of that name in another namespace (which is not named: the user may not see it)."""
    if namespaces_of_name - {namespace}:
        raise BadData(
            f'invalid parameter "query": it is pinned to this session only by ray_io_cluster="{cluster}", and a '
            f"cluster of that name runs in another namespace too (KubeRay's label does not carry the namespace); "
            "pin SessionName, or read the session's archive at its /prometheus/api/v1/"
        )


def _literals(value: str) -> tuple[str, ...]:
    """The value as an equality matcher or a regex matcher (Grafana regex-escapes what it pastes) holds it."""
    return (value, re.sub(r"([.$^*+?()\[\]{}|\\])", r"\\\1", value))


def _selectors(node: Any, pp: Any) -> list[Any]:
    """Every VectorSelector of a parsed expression (those inside range selectors and subqueries too)."""
    if isinstance(node, pp.VectorSelector):
        return [node]
    if isinstance(node, pp.MatrixSelector):
        return [node.vector_selector]
    children: list[Any] = []
    if isinstance(node, pp.BinaryExpr):
        children = [node.lhs, node.rhs]
    elif isinstance(node, pp.AggregateExpr):
        children = [node.expr, node.param]
    elif isinstance(node, pp.Call):
        children = list(node.args)
    elif isinstance(node, (pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
        children = [node.expr]
    return [vs for child in children if child is not None for vs in _selectors(child, pp)]


class PrometheusRefused(HistoryError):
    """The live Prometheus refused this server's credentials (answered 502: the fault is upstream of the user)."""

    status = 502


def read_authorization(path: str, error: type[Exception] = PrometheusUnreachable) -> str:
    """The Authorization header value held in `path` (`--prometheus-authorization-file`), surrounding space
    stripped; `error` names the file and what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read(MAX_AUTHORIZATION + 1).strip()
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"--prometheus-authorization-file {path!r} cannot be read ({type(e).__name__}: {e})") from None
    if len(value) > MAX_AUTHORIZATION:
        raise error(
            f"--prometheus-authorization-file {path!r} holds more than {MAX_AUTHORIZATION // 1024} KiB; it must hold "
            "one line, the Authorization header's value"
        )
    if not value or "\n" in value or "\r" in value:
        raise error(
            f"--prometheus-authorization-file {path!r} must hold one line, the Authorization header's value "
            "(e.g. `Bearer <token>`)"
        )
    return value


def refused(status: int, authorization_file: str) -> PrometheusRefused:
    how = (
        f"the credentials in --prometheus-authorization-file {authorization_file!r} were refused; renew them"
        if authorization_file
        else "it asks for credentials: put its Authorization header in a file and give --prometheus-authorization-file"
    )
    return PrometheusRefused(f"the live Prometheus answered HTTP {status}: {how}")


def ask(
    base_url: str, endpoint: str, params: list[tuple[str, str]], timeout_s: float, authorization_file: str = ""
) -> Answer:
    """POST one query to the live Prometheus and read its answer, at most MAX_ANSWER bytes. A 401 or 403 (the
    credentials) is raised as PrometheusRefused; any other answer is returned as it came."""
    if endpoint not in ENDPOINTS:
        raise BadData(f"live charts send only {', '.join(ENDPOINTS)}, not {endpoint}")
    headers = {"Authorization": read_authorization(authorization_file)} if authorization_file else {}
    url = base_url.rstrip("/") + "/api/v1" + endpoint
    # A little longer than the query's own timeout, so that Prometheus's timeout error is the one that arrives.
    timeout = httpx.Timeout(timeout_s + 5, connect=CONNECT_TIMEOUT)
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            with client.stream("POST", url, data=dict(params), headers=headers) as answer:
                if answer.status_code in (401, 403):
                    raise refused(answer.status_code, authorization_file)
                body = bytearray()
                for chunk in answer.iter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER:
                        raise TooLarge(
                            f"the live Prometheus's answer exceeds {MAX_ANSWER // 2**20} MiB; narrow the query "
                            "(fewer series, or a larger step)"
                        )
                return Answer(answer.status_code, bytes(body), answer.headers.get("content-type", ""))
    except httpx.HTTPError as e:
        raise PrometheusUnreachable(
            f"the live Prometheus at {base_url} did not answer ({type(e).__name__}: {e}); check --prometheus-url "
            "(this server must reach it), or read the session's archive at its /prometheus/api/v1/"
        ) from e
