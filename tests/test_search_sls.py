"""Log search on SLS (historyserver/search/sls_backend.py) against the SLS test server, which checks each request
exactly and answers from a script in SLS's documented shapes (it does not evaluate queries: no SLS emulator exists;
the archive backend is the one tested end to end on real Ray logs). Here: what is asked of SLS for a search, its
pages, `Incomplete` answers, the histogram and the context, and how SLS's errors reach our callers."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from aliyun.log import GetHistogramsRequest, GetLogsRequest, LogClient

from archive.credentials import Credentials, StaticCredentials
from archive.layout import SessionRef
from historyserver.search.backend import SearchFilters, SearchRequest
from historyserver.search.errors import SearchAuthFailed, SearchQuotaExceeded, SearchRefused, SearchUnavailable
from historyserver.search.query import parse
from historyserver.search.sls_backend import SlsBackend, SlsSearchConfig
from historyserver.search.sls_client import SlsRequestError
from tests.servers.sls import running_sls

SESSION = SessionRef("team-a", "c1", "session_2026-11-25_19-58-12_123456_7000")
NODE = "a5f98df87f117771c91ca093491ee5f891c9e432bfe62ac8566abb40"
SCOPE = f'(__tag__:namespace: "team-a" and __tag__:cluster: "c1" and __tag__:session: "{SESSION.session}")'
SINCE, UNTIL = 1_764_100_000, 1_764_103_600
NOW = 1_764_200_000.5  # the backend's wall clock: a search without `until` ends an hour after it


@pytest.fixture
def sls():
    with running_sls() as server:
        yield server


class FakeClock:
    """The backend's clock: sleeping moves it, so retry deadlines are tested without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def backend(server, clock: FakeClock | None = None, secret: str | None = None, proxy: str | None = None, **kw):
    config = SlsSearchConfig(
        endpoint=server.endpoint,
        project="rayhistory",
        logstore="ray-logs",
        credentials=StaticCredentials(Credentials(server.access_key_id, secret or server.access_key_secret)),
        proxy=proxy or server.proxy,
        **kw,
    )
    clock = clock or FakeClock()
    return SlsBackend(config, clock=clock, sleep=clock.sleep, wallclock=lambda: NOW)


def body(query: str, line: int = 100, offset: int = 0, start: int = SINCE, end: int = UNTIL) -> dict[str, Any]:
    """A GetLogs V2 body as the SDK sends it (test_the_reader_sends_what_the_sdk_sends proves the shape)."""
    return {
        "from": start,
        "to": end,
        "line": line,
        "offset": offset,
        "powerSql": False,
        "accurate": True,
        "fromNs": 0,
        "toNs": 0,
        "query": query,
        "reverse": False,
        "forward": True,
    }


def request(q: str, limit: int = 100, **kw) -> SearchRequest:
    filters = SearchFilters(since=SINCE, until=UNTIL, **kw)
    return SearchRequest(parse(q), q, "terms", None, filters, limit, None)


def row(i: int, message: str = "worker died: error {i}", **extra) -> dict[str, Any]:
    out = {
        "__time__": SINCE + i,
        "__time_ns_part__": 5_000_000,
        "__tag__:namespace": "team-a",
        "__tag__:cluster": "c1",
        "__tag__:session": SESSION.session,
        "__tag__:node_id": NODE,
        "__tag__:file": "raylet.out",
        "__topic__": "ray",
        "__source__": NODE,
        "message": message.format(i=i),
        "line": i + 1,
        "offset": 100 * i,
        "level": "ERROR",
        "pid": 7013,
        "component": "raylet",
    }
    out.update(extra)
    return out


def expect_first_page_extras(sls, search: str, total: int, where: str = "") -> None:
    """The total and the four facets that a first page asks SLS SQL for."""
    w = f" WHERE {where}" if where else ""
    sls.expect_logs(body(f"{search} | SELECT count(*) AS n{w}"), [{"n": total}], hasSQL=True)
    for key, values in (
        ('"__tag__:node_id"', {NODE: total}),
        ('"__tag__:file"', {"raylet.out": total}),
        ('"level"', {"ERROR": total}),
        ('"job_id"', {}),
    ):
        sql = f"{search} | SELECT {key} AS value, count(*) AS n{w} GROUP BY value ORDER BY n DESC LIMIT 20"
        sls.expect_logs(body(sql), [{"value": v, "n": n} for v, n in values.items()], hasSQL=True)


def test_the_reader_sends_what_the_sdk_sends(sls):
    """Our one-attempt calls are byte for byte the SDK's own get_logs / get_histograms / get_context_logs."""
    sls.expect_logs(body("never asked"))  # scripted mode: every other request is kept as unexpected
    ours = backend(sls).reader
    sdk = LogClient(sls.endpoint, sls.access_key_id, sls.access_key_secret)
    sdk._session.proxies, sdk._session.trust_env = {"http": sls.proxy}, False
    q = 'message: "boom" and __tag__:file: #"old/raylet.out"'
    calls = [
        (
            lambda: sdk.get_logs(GetLogsRequest("rayhistory", "ray-logs", SINCE, UNTIL, query=q, line=40, offset=7)),
            lambda: ours.get_logs_once("rayhistory", "ray-logs", SINCE, UNTIL, q, 40, 7),
        ),
        (
            lambda: sdk.get_histograms(GetHistogramsRequest("rayhistory", "ray-logs", SINCE, UNTIL, query=q)),
            lambda: ours.get_histograms_once("rayhistory", "ray-logs", SINCE, UNTIL, q),
        ),
        (
            lambda: sdk.get_context_logs("rayhistory", "ray-logs", "AB12-3", "0|MTU1|2|1", 5, 6),
            lambda: ours.get_context_once("rayhistory", "ray-logs", "AB12-3", "0|MTU1|2|1", 5, 6),
        ),
    ]
    for theirs, mine in calls:
        with pytest.raises(Exception, match="UnexpectedRequest"):
            theirs()
        with pytest.raises(SlsRequestError) as e:
            mine()
        assert e.value.status == 400 and e.value.code == "UnexpectedRequest"
        assert sls.unexpected[-1] == sls.unexpected[-2]
    assert [u["kind"] for u in sls.unexpected] == ["logs", "logs", "histograms", "histograms", "context", "context"]


def test_a_search_is_scoped_filtered_translated_paged_and_mapped_back_to_hits(sls):
    search = f'{SCOPE} and __tag__:node_id: "{NODE}" and level: "ERROR" and (message: "error")'
    sls.expect_logs(body(search), [row(i) for i in range(100)])
    sls.expect_logs(body(search, line=50, offset=100), [row(i) for i in range(100, 150)])
    expect_first_page_extras(sls, search, 400)
    answer = backend(sls).search([SESSION], request("error", limit=150, node_id=(NODE,), level=("ERROR",)))
    assert sls.unexpected == [] and all(s.used for s in sls.scripts)
    assert (answer.backend, answer.complete, answer.total, len(answer.hits)) == ("sls", True, 400, 150)
    hit = answer.hits[7]
    assert (hit.session, hit.node_id, hit.file, hit.line, hit.offset) == (SESSION.id, NODE, "raylet.out", 8, 700)
    assert (hit.time, hit.level, hit.pid, hit.component, hit.kind) == (SINCE + 7.005, "ERROR", 7013, "raylet", "log")
    assert hit.message == "worker died: error 7" and hit.match == [(13, 18)]
    assert hit.url.startswith(f"/sessions/{SESSION.id}/logs/view?") and "line=8" in hit.url
    assert answer.facets == {"node_id": {NODE: 400}, "file": {"raylet.out": 400}, "level": {"ERROR": 400}, "job_id": {}}

    # the next page: from where the first stopped, with the total it carried and no second count
    sls.expect_logs(body(search, line=100, offset=150), [row(i) for i in range(150, 250)])
    sls.expect_logs(body(search, line=50, offset=250), [row(i) for i in range(250, 260)])  # the last rows
    second = backend(sls).search(
        [SESSION],
        SearchRequest(
            parse("error"),
            "error",
            "terms",
            None,
            request("", node_id=(NODE,), level=("ERROR",)).filters,
            150,
            answer.next_cursor,
        ),
    )
    assert sls.unexpected == [] and [h.line for h in second.hits] == list(range(151, 261))
    assert second.total == 400 and second.next_cursor is None and second.facets == {}


def test_rows_sls_matched_more_loosely_than_our_query_are_not_hits(sls):
    """SLS splits a tag's value into tokens; `file: raylet.out` means the whole value here."""
    search = f'{SCOPE} and (__tag__:file: "raylet.out")'
    rows = [row(0), row(1, **{"__tag__:file": "old/raylet.out"}), row(2)]
    sls.expect_logs(body(search), rows)
    expect_first_page_extras(sls, search, 3)
    answer = backend(sls).search([SESSION], request("file: raylet.out"))
    assert [h.line for h in answer.hits] == [1, 3] and answer.next_cursor is None


def test_incomplete_answers_are_asked_again_until_complete_or_the_deadline(sls):
    search = f'{SCOPE} and (message: "boom")'
    for _ in range(2):
        sls.expect_logs(body(search), [row(0, "boom")], progress="Incomplete")
    sls.expect_logs(body(search), [row(0, "boom"), row(1, "boom")])
    expect_first_page_extras(sls, search, 2)
    clock = FakeClock()
    answer = backend(sls, clock).search([SESSION], request("boom"))
    assert answer.complete and len(answer.hits) == 2 and clock.sleeps == [0.5, 0.5]

    # never complete: asked until the deadline, then answered as incomplete, saying so
    for _ in range(20):
        sls.expect_logs(body(search), [row(0, "boom")], progress="Incomplete")
    expect_first_page_extras(sls, search, 1)
    clock = FakeClock()
    answer = backend(sls, clock, timeout=2.0).search([SESSION], request("boom"))
    assert not answer.complete and [h.line for h in answer.hits] == [1]
    assert clock.now <= 2.0 and len(clock.sleeps) == 3
    assert any("had not finished" in w for w in answer.warnings)
    assert answer.next_cursor is not None  # an incomplete short page is not the end: the next page goes on from it


def test_the_histogram_rebins_slss_buckets(sls):
    search = f'{SCOPE} and (message: "boom")'
    params = {
        "topic": "",
        "from": str(SINCE),
        "to": str(UNTIL),
        "query": search,
        "accurate": "True",
        "fromNs": "0",
        "toNs": "0",
        "type": "histogram",
    }
    sls.expect_histograms(params, [(SINCE + 600 * i, SINCE + 600 * (i + 1), i + 1) for i in range(6)])
    got = backend(sls).histogram([SESSION], request("boom"), 3)
    assert sls.unexpected == []
    assert got == [(float(SINCE), 3), (float(SINCE + 1200), 7), (float(SINCE + 2400), 11)]


def test_context_through_pack_meta_or_by_line_number(sls):
    here = f'{SCOPE} and __tag__:node_id: "{NODE}" and __tag__:file: "raylet.out"'
    anchor = row(6, "the hit", **{"__tag__:__pack_id__": "895CEA449A52FE-2", "__pack_meta__": "2|MTU1OTI4|3|1"})
    sls.expect_logs(body(f"{here} and line = 7 | with_pack_meta", line=1, start=0, end=int(NOW) + 3600), [anchor])
    around = [row(i, "line {i}", **{"__tag__:__pack_id__": "895CEA449A52FE-2"}) for i in (4, 5, 6, 7, 8)]
    sls.expect_context(
        {
            "pack_id": "895CEA449A52FE-2",
            "pack_meta": "2|MTU1OTI4|3|1",
            "type": "context_log",
            "back_lines": "2",
            "forward_lines": "2",
        },
        around + [around[1]],  # a line delivered twice (at least once) is shown once
        back_lines=2,
        forward_lines=2,
    )
    got = backend(sls).context(SESSION, NODE, "raylet.out", 7, 2, 2)
    assert sls.unexpected == [] and got.warnings == []
    assert [(c.line, c.offset, c.message) for c in got.lines] == [
        (i + 1, 100 * i, f"line {i}") for i in (4, 5, 6, 7, 8)
    ]

    # SLS gives no pack meta (undocumented for logs not sent by Logtail): the lines around it by number, said so
    sls.expect_logs(body(f"{here} and line = 7 | with_pack_meta", line=1, start=0, end=int(NOW) + 3600), [row(6)])
    sls.expect_logs(body(f"{here} and line in [5 9]", line=5, start=0, end=int(NOW) + 3600), around[::-1])
    got = backend(sls).context(SESSION, NODE, "raylet.out", 7, 2, 2)
    assert sls.unexpected == [] and [c.line for c in got.lines] == [5, 6, 7, 8, 9]
    assert "__pack_meta__" in got.warnings[0]

    sls.expect_logs(body(f"{here} and line = 70 | with_pack_meta", line=1, start=0, end=int(NOW) + 3600), [])
    with pytest.raises(SearchRefused, match="line 70 of raylet.out"):
        backend(sls).context(SESSION, NODE, "raylet.out", 70, 2, 2)


def test_regex_mode_narrows_by_literals_and_filters_with_regexp_like(sls):
    search = f"{SCOPE} and (message: died*)"  # regex.py's literal narrowing: 'died' may start a longer word
    where = """regexp_like("message", 'worker \\d+ died')"""
    columns = (
        '"__tag__:namespace", "__tag__:cluster", "__tag__:session", "__tag__:node_id", "__tag__:file", '
        '"__tag__:worker_id", "__time__", "line", "offset", "level", "job_id", "pid", "component", "task_name", '
        '"actor_name", "message"'
    )
    page = f'{search} | SELECT {columns} WHERE {where} ORDER BY __time__, "line" LIMIT 0, 100'
    sls.expect_logs(body(page), [row(0, "worker 12 died"), row(1, "worker x died")], hasSQL=True)
    expect_first_page_extras(sls, search, 1, where)
    req = SearchRequest(parse(""), "worker \\d+ died", "regex", r"worker \d+ died", request("").filters, 100, None)
    answer = backend(sls).search([SESSION], req)
    assert sls.unexpected == [], sls.unexpected
    # RE2 has the last word: a row SLS's regexp_like let through that RE2 does not match is no hit
    assert [(h.line, h.match) for h in answer.hits] == [(1, [(0, 14)])] and answer.total == 1


def test_sls_errors_reach_callers_as_search_errors(sls):
    search = f'{SCOPE} and (message: "boom")'
    with pytest.raises(SearchAuthFailed) as auth:
        backend(sls, secret="wrong").search([SESSION], request("boom"))  # the server checks the real signature
    assert (
        auth.value.status == 502 and auth.value.code == "SignatureNotMatch" and "SignatureNotMatch" in str(auth.value)
    )

    cases = [
        (403, ("ReadQuotaExceed", "read quota exceeded"), SearchQuotaExceeded),
        (403, ("Unauthorized", "denied by sts or ram"), SearchAuthFailed),
        (500, ("InternalServerError", "try again"), SearchUnavailable),
        (404, ("LogStoreNotExist", "logstore ray-logs does not exist"), SearchUnavailable),
        (400, ("IndexConfigNotExist", "logstore without index config"), SearchUnavailable),
        (400, ("ParameterInvalid", "line 1:5: mismatched input"), SearchRefused),
    ]
    for status, error, kind in cases:
        sls.expect_logs(body(search), status=status, error=error)
        with pytest.raises(kind) as got:
            backend(sls).search([SESSION], request("boom"))
        assert error[0] in str(got.value) and error[1] in str(got.value), got.value
    assert isinstance(got.value, SearchRefused)
    assert sls.unexpected == []

    # nothing listening: unavailable at once (no SDK retry loop of 10 x 1 s)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(SearchUnavailable, match="cannot be reached"):
        backend(sls, proxy=dead, request_timeout=2.0).search([SESSION], request("boom"))


def test_a_quota_answer_carries_retry_after(sls):
    search = f'{SCOPE} and (message: "boom")'
    sls.expect_logs(body(search), status=403, error=("ReadQuotaExceed", "read quota exceeded"))
    with pytest.raises(SearchQuotaExceeded) as e:
        backend(sls).search([SESSION], request("boom"))
    assert e.value.status == 503 and e.value.retry_after > 0


def test_the_server_reads_the_collectors_sls_settings_and_names_what_is_missing(tmp_path):
    from archive.settings import SettingsError
    from collector.settings import CollectorSettings
    from historyserver.search.sls_backend import config_from_settings
    from historyserver.settings import ServerSettings

    shared = ("sls_endpoint", "sls_project", "sls_logstore", "sls_proxy")
    collector = {f.name: f for f in CollectorSettings.fields()}
    server = {f.name: f for f in ServerSettings.fields()}
    assert all(CollectorSettings.env_name(collector[k]) == ServerSettings.env_name(server[k]) for k in shared)
    env = {"RAYHISTORY_SLS_ENDPOINT": "cn-hangzhou.log.aliyuncs.com", "RAYHISTORY_SLS_PROJECT": "p"}
    with pytest.raises(SettingsError, match="--sls-logstore"):
        ServerSettings.load({"archive": str(tmp_path)}, env)
    settings = ServerSettings.load({"archive": str(tmp_path)}, {**env, "RAYHISTORY_SLS_LOGSTORE": "ray-logs"})
    assert config_from_settings(ServerSettings.load({"archive": str(tmp_path)}, {})) is None
    with pytest.raises(SettingsError, match="ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        config_from_settings(settings, {"ALIBABA_CLOUD_ACCESS_KEY_ID": "id"})
    config = config_from_settings(
        settings, {"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s"}
    )
    assert config is not None
    assert (config.endpoint, config.project, config.logstore, config.timeout) == (
        "cn-hangzhou.log.aliyuncs.com",
        "p",
        "ray-logs",
        30.0,
    )


def test_a_cursor_not_ours_is_refused(sls):
    req = request("boom")
    req.cursor = "not-a-cursor"
    with pytest.raises(SearchRefused, match="cursor"):
        backend(sls).search([SESSION], req)
    assert sls.searches == []


def test_the_total_comes_from_the_histogram_when_sql_is_refused(sls):
    search = f'{SCOPE} and (message: "boom")'
    sls.expect_logs(body(search), [row(0, "boom")])
    sls.expect_logs(body(f"{search} | SELECT count(*) AS n"), status=400, error=("ParameterInvalid", "no analytics"))
    params = {"topic": "", "from": str(SINCE), "to": str(UNTIL), "query": search, "accurate": "True"}
    sls.expect_histograms({**params, "fromNs": "0", "toNs": "0", "type": "histogram"}, [(SINCE, UNTIL, 7)])
    for key in ('"__tag__:node_id"', '"__tag__:file"', '"level"', '"job_id"'):
        sql = f"{search} | SELECT {key} AS value, count(*) AS n GROUP BY value ORDER BY n DESC LIMIT 20"
        sls.expect_logs(body(sql), [])
    answer = backend(sls).search([SESSION], request("boom"))
    assert sls.unexpected == [] and answer.total == 7
    assert any("total from SLS's histogram" in w for w in answer.warnings)


def test_the_regex_histogram_is_sql_grouped_by_time(sls):
    search = f"{SCOPE} and (message: died*)"
    where = """regexp_like("message", 'worker \\d+ died')"""
    bucket = f"{SINCE} + (__time__ - {SINCE}) / 1200 * 1200"
    sql = f"{search} | SELECT {bucket} AS t, count(*) AS n WHERE {where} GROUP BY t ORDER BY t LIMIT 10000"
    sls.expect_logs(body(sql), [{"t": SINCE, "n": 4}, {"t": SINCE + 2400, "n": 2}], hasSQL=True)
    req = SearchRequest(parse(""), "", "regex", r"worker \d+ died", request("").filters, 100, None)
    assert backend(sls).histogram([SESSION], req, 3) == [
        (float(SINCE), 4),
        (float(SINCE + 1200), 0),
        (float(SINCE + 2400), 2),
    ]
    assert sls.unexpected == []


def test_regex_pages_stop_where_sls_sql_stops(sls):
    from historyserver.search.sls_rows import Cursor

    req = SearchRequest(parse(""), "", "regex", r"worker \d+ died", request("").filters, 100, None)
    req.cursor = Cursor(999_950, UNTIL, 2_000_000).encode()
    with pytest.raises(SearchRefused, match="1,000,000"):
        backend(sls).search([SESSION], req)
    assert sls.searches == []


def test_what_the_deadline_leaves_no_time_for_is_left_out_and_said(sls):
    search = f'{SCOPE} and (message: "boom")'
    sls.expect_logs(body(search), [row(0, "boom")])
    sls.expect_logs(body(f"{search} | SELECT count(*) AS n"), [{"n": 1}])

    class Ticking(FakeClock):
        def __call__(self) -> float:  # every look at the clock finds 0.4 s more gone (slow SLS answers)
            self.now += 0.4
            return self.now

    clock = Ticking()
    answer = backend(sls, clock, timeout=1.0).search([SESSION], request("boom"))
    assert sls.unexpected == [] and all(s.used for s in sls.scripts)
    assert answer.total == 1 and answer.facets == {} and len(answer.hits) == 1
    assert any("facets left out" in w for w in answer.warnings)
