"""Every route, fuzzed from /api/openapi.json (schemathesis, in-process over ASGI) and driven with hand-written
hostile values in each of its path and query parameters: no 5xx (but a deliberate 503 with Retry-After), no
traceback in a body, each API family's errors in its own shape, and no byte of a file outside the archive.

CI runs a bounded, derandomized pass (RAYHISTORY_FUZZ_EXAMPLES examples per operation, 20 by default); a longer
run is the same file with a larger number, e.g. RAYHISTORY_FUZZ_EXAMPLES=500 for a nightly.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from archive.layout import SessionRef
from archive.storage.local import LocalStore
from collector.service import Collector
from collector.settings import CollectorSettings
from collector.sources.session_dir import SessionDir
from tests.fake_session import NODE_ID, SESSION_NAME, make_session
from tests.metrics_archive import FakeSession, write_session
from tests.test_prometheus_api import make_client

EXAMPLES = int(os.environ.get("RAYHISTORY_FUZZ_EXAMPLES", "20"))
T0 = 1_767_225_600_000
HOUR = 3_600_000
METRICS = [
    FakeSession("team", "alpha", "session_2026-01-01_00-00-00_000001_1", T0, T0 + HOUR // 4),
    FakeSession(
        "team",
        "beta",
        "session_2026-01-01_00-00-00_000002_1",
        T0,
        T0 + HOUR // 4,
        instance="10.0.0.9:8080",
        node_id="c" * 56,
    ),
]
RAY = SessionRef("ns", "c", SESSION_NAME)
CANARY = "canary-8d1f0c-outside-the-archive"
PASSWD = "root:x:0:0"
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"/")
WORKER_LOG = f"worker-{'ab' * 28}-01000000-4242.out"

# Values that try to leave the archive, overflow a number, break a decoder or a regex engine, or nest deeply.
HOSTILE = [
    "../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "..%252f..%252fetc%252fpasswd",
    "/etc/passwd",
    "....//....//etc/passwd",
    "..\\..\\etc\\passwd",
    "../canary.txt",
    "logs/../../canary.txt",
    "a\x00b",
    "\x00",
    "%ff%fe",
    "\ufffd\ufeff",
    str(10**30),
    str(-(10**30)),
    "-1",
    "-9223372036854775809",
    "0",
    "1e309",
    "NaN",
    "Inf",
    "-Inf",
    "nan",
    "",
    " ",
    "'",
    '"',
    "\n",
    "*",
    "**/**/**/**/**/**/**/**/**/**/**/**/**/**/x",
    '{__name__=~"(a+)+$"}',
    '{SessionName=~"(.|.)*Z"}',
    "(a+)+$",
    "(.|.)*Z",
    'up{instance="' + "x" * 100_000 + '"}',
    "(" * 10_000 + "up" + ")" * 10_000,
    "+".join(["up"] * 5_000),
    "x" * 100_000,
]
BIG = "x" * (10 * 2**20)  # a 10 MB parameter


@dataclass
class Real:
    """Values of the fuzz archive, mixed into the generated ones so that requests also reach past the lookups."""

    values: dict[str, list[str]]

    def get(self, name: str) -> list[str]:
        return self.values.get(name, [])


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("fuzz")
    root = base / "archive"
    store = LocalStore(root)
    for s in METRICS:
        write_session(store, s)
    session = make_session(base / "ray")
    reference = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "ray-2.60"
    samples = (reference / "export_events" / "export_event_samples.jsonl.txt").read_bytes().splitlines()
    for kind in ("DRIVER_JOB", "NODE", "TASK", "ACTOR", "SUBMISSION_JOB"):
        lines = [line for line in samples if re.search(rb'"source_type": ?"EXPORT_' + kind.encode() + b'"', line)]
        (session / "logs" / "export_events" / f"event_EXPORT_{kind}.log").write_bytes(b"\n".join(lines) + b"\n")
    (session / "logs" / WORKER_LOG).write_bytes(b"\x1b[32mhello\x1b[0m\n" * 50 + b"\xff\xfe not UTF-8\n")
    settings_ = CollectorSettings(
        session_dir=str(session), archive=store.url, cluster=RAY.cluster, namespace=RAY.namespace, once=True
    )
    Collector(settings_, store, SessionDir(session)).run()
    # What a traversal would find: a file beside the archive, and one beside the server's cache.
    (base / "canary.txt").write_text(CANARY)
    return root


@pytest.fixture(scope="module")
def client(archive, tmp_path_factory):
    cache = tmp_path_factory.mktemp("fuzz-cache")
    (cache.parent / "canary.txt").write_text(CANARY)
    with make_client(archive, cache) as c:
        yield c


@pytest.fixture(scope="module")
def real(client) -> Real:
    sid = RAY.id
    get = lambda path: client.get(path).json()  # noqa: E731
    tasks = get(f"/sessions/{sid}/api/v0/tasks?detail=1")["data"]["result"]["result"]
    actors = get(f"/sessions/{sid}/logical/actors")["data"]["actors"]
    jobs = get(f"/sessions/{sid}/api/jobs/")
    values = {
        "session_id": [sid, *(s.id for s in METRICS)],
        "namespace": ["team", "ns"],
        "cluster": ["alpha", "beta", "c"],
        "node_id": [NODE_ID, "a" * 56],
        "node_ip": ["10.0.0.1"],
        "task_id": [t["task_id"] for t in tasks][:3],
        "actor_id": list(actors)[:3],
        "job_id": [j["job_id"] for j in jobs if j.get("job_id")][:2],
        "job_or_submission_id": [j.get("submission_id") or j["job_id"] for j in jobs][:2],
        "submission_id": [j["submission_id"] for j in jobs if j.get("submission_id")][:2],
        "filename": ["raylet.out", "gcs_server.out", WORKER_LOG],
        "pid": ["4242"],
        "media_type": ["file", "stream"],
        "glob": ["*", "*.out", "**/*"],
        "name": ["instance", "SessionName", "__name__"],
        "uid": ["rayDefaultDashboard"],
        "query": ["up", "sum(rate(ray_tasks_finished[5m]))"],
        "match[]": ["up", '{SessionName=~"session_.*"}'],
        "start": [str(T0 // 1000)],
        "end": [str((T0 + HOUR) // 1000)],
        "time": [str((T0 + HOUR // 8) // 1000)],
        "step": ["60", "15s"],
        "limit": ["1", "100"],
        "lines": ["10", "-1"],
    }
    return Real({k: [v for v in vs if v] for k, vs in values.items()})


# -- what every response must satisfy -------------------------------------------------------------------------


def family(path: str) -> str:
    if "/prometheus/api/v1" in path:
        return "prometheus"
    if path.startswith("/sessions/"):
        return "ray"
    return "ours"


def check_response(method: str, path: str, status: int, headers, body: bytes, request_repr: str) -> None:
    where = f"{method} {request_repr[:300]} -> {status}"
    text = body.decode("utf-8", errors="replace")
    assert not TRACEBACK.search(text), f"{where}: a traceback in the body: {text[:2000]}"
    assert CANARY not in text and PASSWD not in text, f"{where}: a file outside the archive was served"
    assert status < 500 or (status == 503 and (headers.get("retry-after") or _prometheus_timeout(path, text))), (
        f"{where}: {text[:2000]}"
    )
    if status < 400 or method == "HEAD":
        return
    content_type = headers.get("content-type", "")
    assert content_type.startswith("application/json"), f"{where}: an error as {content_type!r}: {text[:500]}"
    error = json.loads(text)
    kind = family(path)
    if kind == "prometheus":
        assert set(error) == {"status", "errorType", "error"} and error["status"] == "error", f"{where}: {error}"
    elif kind == "ray":
        assert set(error) == {"result", "msg", "data"} and error["result"] is False, f"{where}: {error}"
    else:
        assert set(error) == {"error"} and set(error["error"]) == {"code", "message"}, f"{where}: {error}"


def _prometheus_timeout(path: str, text: str) -> bool:
    """Prometheus's own 503 for a query that ran out of its (possibly request-given) timeout."""
    return family(path) == "prometheus" and '"errorType":"timeout"' in text


def _header(headers, name: str) -> str:
    value = headers.get(name) or headers.get(name.title()) or ""
    return value[0] if isinstance(value, list) else value


class _Headers(dict):
    def __init__(self, raw) -> None:
        super().__init__({k.lower(): _header(raw, k) for k in raw})


# -- the property-based fuzzer --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_schema(client, real):
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", client.app)

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        if not isinstance(path_parameters, dict):
            return st.just(path_parameters)
        return st.fixed_dictionaries({k: _mixed(real.get(k), v) for k, v in path_parameters.items()})

    @schema.hook
    def flatmap_query(context, query):
        if not isinstance(query, dict) or not query:
            return st.just(query)
        return st.fixed_dictionaries({k: _mixed(real.get(k), v) for k, v in query.items()})

    return schema


def _mixed(real_values: list[str], generated):
    """The generated value, a real one, or a hostile one."""
    options = [st.just(generated), st.sampled_from(HOSTILE)]
    if real_values:
        options.append(st.sampled_from(real_values))
    return st.one_of(*options)


def _operations() -> list[tuple[str, str]]:
    """Every (method, path) of the description, read from an app over an empty archive (no I/O until a request)."""
    import tempfile

    from archive.storage import open_store
    from historyserver.app import create_app
    from historyserver.settings import ServerSettings

    with tempfile.TemporaryDirectory() as empty:
        app = create_app(ServerSettings(archive=empty, cache_dir=empty, compact_on_end=False), open_store(empty))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # FastAPI warns of two operations sharing an operationId: none may
            paths = app.openapi()["paths"]
    return [(method.upper(), path) for path, ops in paths.items() for method in ops]


OPERATIONS = _operations()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz_every_operation(api_schema, method, path):
    operation = api_schema[path][method]
    strategy = st.one_of(*(operation.as_strategy(mode, hooks=api_schema.hooks) for mode in GenerationMode))

    @given(strategy)
    @settings(
        max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def run(case):
        started = time.monotonic()
        response = case.call()
        elapsed = time.monotonic() - started
        check_response(
            case.method,
            case.formatted_path,
            response.status_code,
            _Headers(response.headers),
            response.content,
            case.as_curl_command(),
        )
        assert elapsed < 20, f"{case.method} {case.formatted_path} took {elapsed:.1f} s"

    run()


# -- hand-written hostile values, in every path and query parameter of every route ----------------------------

OPENED: list[str] = []
_WATCHING = [False]


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _WATCHING[0] and isinstance(args[0], (str, bytes, os.PathLike)):
        OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # sees every open() and os.open() of the process, DuckDB's excepted


@pytest.fixture
def watch_opens(archive):
    """The files the server opened during the test; none may lie outside the archive, the cache and the code."""
    OPENED.clear()
    _WATCHING[0] = True
    yield OPENED
    _WATCHING[0] = False
    outside = [p for p in OPENED if "canary" in p or p.startswith(("/etc/", "../")) or "/../" in p]
    assert not outside, f"files outside the archive were opened: {outside[:10]}"


RAW = ["%ff%fe", "%00", "..%2f..%2fcanary.txt", "%2e%2e/%2e%2e/canary.txt"]  # sent as written, not re-encoded
DEFAULTS = {
    "query": "up",
    "match[]": "up",
    "start": str(T0 // 1000),
    "end": str((T0 + HOUR) // 1000),
    "step": "60",
    "media_type": "file",
    "filename": "raylet.out",
}
GET_OPERATIONS = [(m, p) for m, p in OPERATIONS if m == "GET"]


def _parameters(client, path: str) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return client.app.openapi()["paths"][path]["get"].get("parameters", [])


def _url(path: str, path_values: dict[str, str], query: list[tuple[str, str]], raw: dict[str, str]) -> str:
    for name, value in path_values.items():
        path = path.replace("{" + name + "}", raw.get(name) or quote(value, safe=""))
    parts = [f"{quote(k, safe='[]')}={raw.get(k) or quote(v, safe='')}" for k, v in query]
    return path + ("?" + "&".join(parts) if parts else "")


@pytest.mark.parametrize(("method", "path"), GET_OPERATIONS, ids=[f"{m} {p}" for m, p in GET_OPERATIONS])
def test_hostile_values_in_every_parameter(client, real, watch_opens, method, path):
    params = _parameters(client, path)
    sid = RAY.id if "/api/v0/" in path or "/logical/" in path or "/nodes" in path else METRICS[0].id
    base = {
        p["name"]: (
            {"session_id": sid, "namespace": "team", "cluster": "alpha"}.get(p["name"])
            or DEFAULTS.get(p["name"])
            or (real.get(p["name"]) or ["x"])[0]
        )
        for p in params
        if p["in"] == "path" or p.get("required")
    }
    for param in params:
        name = param["name"]
        for value in HOSTILE + RAW:
            raw = {name: value} if value in RAW else {}
            values = {**base, name: value}
            path_values = {p["name"]: values[p["name"]] for p in params if p["in"] == "path"}
            query = [(k, v) for k, v in values.items() if k not in path_values]
            url = _url(path, path_values, query, raw)
            raw_get(client, url, f"{name}={value[:60]!r}")


def raw_get(client, url: str, what: str = "", limit_s: float = 5) -> tuple[int, bytes]:
    """GET url, sent as written (any length, invalid UTF-8 and all) to the app as uvicorn would hand it over,
    and checked; returns the status and body."""
    path, _, query = url.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
        "root_path": "",
        "path": unquote(path, errors="replace"),
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver")],
    }
    started = time.monotonic()
    status, headers, body = client.portal.call(_asgi_call, client.app, scope)
    elapsed = time.monotonic() - started
    if os.environ.get("FUZZ_TRACE"):
        print(f"{elapsed:.2f} {what[:80]} {url[:100]}", flush=True)
    check_response("GET", scope["path"], status, headers, body, f"{what} {url[:200]}")
    assert elapsed < limit_s, f"GET {url[:200]} took {elapsed:.1f} s"
    return status, body


async def _asgi_call(app, scope):
    sent: list[dict] = []
    requested = False

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, body


# -- what the fuzzing found, kept as regressions ------------------------------------------------------------

DEEP = "(" * 10_000 + "up" + ")" * 10_000


@pytest.mark.parametrize("query", [DEEP, "abs(" * 10_000 + "up" + ")" * 10_000, " + ".join(["up"] * 10_000)])
def test_deeply_nested_promql_is_a_400_not_a_crashed_server(client, query):
    # promql_parser overflowed its stack on a few thousand levels: a segfault of the whole server.
    for prefix in ("/prometheus/api/v1", f"/sessions/{METRICS[0].id}/prometheus/api/v1"):
        for endpoint, extra in [
            ("query", {}),
            ("query_range", {"start": "0", "end": "60", "step": "15"}),
            ("format_query", {}),
            ("query_exemplars", {}),
        ]:
            r = client.post(f"{prefix}/{endpoint}", data={"query": query, **extra})
            assert r.status_code == 400 and r.json()["errorType"] == "bad_data", r.text[:300]
            assert "nests more than 200 levels" in r.json()["error"]
        r = client.post(f"{prefix}/series", data={"match[]": "{" * 10_000})
        assert r.status_code == 400, r.text[:300]


def test_nesting_counts_brackets_and_operators_outside_strings():
    from historyserver.promql.parser import MAX_NESTING, nesting

    assert nesting('sum(rate(x{a="((((", b=~"+-*/"}[5m])) by (a) / 2') == 3 + 1
    assert nesting("# ((((\nup") == 0
    assert nesting(DEEP) == MAX_NESTING + 1  # counting stops past the limit


def test_a_regex_bomb_in_a_session_matcher_answers_at_once(client):
    # Scope pruning matched SessionName with Python's backtracking re: exponential on `(.|.)*Z`.
    # label_replace ran its regex with Python's re too, over every value of the source label.
    for query in [
        '{SessionName=~"(.|.)*Z"}',
        'up{SessionName!~"(.|.)*Z"}',
        '{__name__=~"(a+)+$"}',
        'label_replace(ray_node_cpu_utilization, "x", "$1", "SessionName", "(.|.)*Z")',
    ]:
        started = time.monotonic()
        r = client.get("/prometheus/api/v1/query", params={"query": query, "time": str((T0 + HOUR // 8) // 1000)})
        assert r.status_code in (200, 400), r.text
        r = client.get("/prometheus/api/v1/series", params={"match[]": query})
        assert r.status_code in (200, 400), r.text
        assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("what", "url"),
    [
        ("ours", "/api/v1/sessions?namespace="),
        ("ours", "/api/v1/sessions?limit="),
        ("ours", "/nosuchpage?x="),
        ("ray", f"/sessions/{RAY.id}/api/v0/logs/file?node_id={NODE_ID}&filename="),
        ("ray", f"/sessions/{RAY.id}/api/v0/tasks?filter_keys=name&filter_predicates=%3D&filter_values="),
        ("prometheus", "/prometheus/api/v1/query?query="),
        ("prometheus", "/prometheus/api/v1/series?match[]="),
        ("prometheus", "/prometheus/api/v1/query?query=up%7Binstance%3D%22"),
        ("prometheus", "/prometheus/api/v1/query?query=up%2Bup%2B"),
    ],
)
def test_a_10_mb_query_string_is_answered_within_seconds(client, what, url):
    filler = {"up%2Bup%2B": "up%2B" * (2 * 2**20), "up%7Binstance%3D%22": BIG}.get(url.rsplit("=", 1)[-1], BIG)
    status, _ = raw_get(client, url + filler, f"10 MB {what}", limit_s=10)
    assert status < 500
