"""The log-search tables (compaction/log_tables.py) and the archive backend over them, on Ray-shaped logs written
into a local archive: rows are the files' lines (number, byte offset, header fields, markers, continuations), and
every query's total and hits equal what the reference matcher (search/match.py) finds line by line."""

from __future__ import annotations

import re
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive.compacted import LOG_HEAD_SQL
from archive.layout import SessionRef
from archive.storage import open_store
from benchmarks.log_search_data import NEEDLE_TOKEN, write_session
from historyserver.compaction import log_tables
from historyserver.compaction.log_lines import SCHEMA, FileLines
from historyserver.search import archive_backend
from historyserver.search.archive_backend import ArchiveBackend
from historyserver.search.backend import MAX_LIMIT, SearchFilters, SearchRequest
from historyserver.search.errors import SearchRefused
from historyserver.search.match import matches
from historyserver.search.query import MatchAll, parse

REF = SessionRef("bench", "logs", "session_2026-11-25_19-58-10_578535_6555")
NODE = "ab" * 28


def rows_of(path: str, data: bytes, pieces: int = 1) -> list[dict]:
    lines = FileLines(NODE, path)
    step = max(1, len(data) // pieces)
    out = []
    for i in range(0, len(data), step):
        for t in lines.feed(data[i : i + step]):
            out += t.to_pylist()
    for t in lines.flush():
        out += t.to_pylist()
    return out


def test_rows_are_physical_lines_with_their_records_fields():
    data = (
        b"[2026-11-25 19:58:17,283 I 7013 7014] (raylet) main.cc:283: Setting cluster ID\n"
        b"*** continuation of the record above\n"
        b"2026-11-25 19:58:12,633\tWARNING utils.py:319 -- python header\n"
        b"\xff not utf-8\n"
        b"last line without newline"
    )
    for pieces in (1, 7, len(data)):  # fed whole, in parts, one byte at a time: the same rows
        rows = rows_of("raylet.out", data, pieces)
        assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
        starts = [0] + [m.end() for m in re.finditer(rb"\n", data)]
        assert [r["offset"] for r in rows] == starts
        assert rows[0]["level"] == "INFO" and rows[0]["pid"] == 7013 and rows[0]["component"] == "raylet"
        assert rows[0]["head"] + rows[0]["message"] == data.split(b"\n")[0].decode()
        assert rows[1]["head"] == "" and rows[1]["message"] == "*** continuation of the record above"
        assert (rows[1]["level"], rows[1]["time"], rows[1]["pid"]) == ("INFO", rows[0]["time"], 7013)
        assert rows[2]["level"] == "WARNING" and rows[2]["message"] == "python header"
        assert rows[3]["message"] == "\ufffd not utf-8" and rows[3]["level"] == "WARNING"  # continues line 3
        assert rows[4]["message"] == "last line without newline"


def test_markers_set_the_task_of_the_lines_after_them_in_raw_output():
    path = f"worker-{'cd' * 28}-01000000-7475.err"
    data = b":job_id:02000000\n:task_name:ok\nok line\n:actor_name:A\n\x1b[36mcoloured\x1b[39m\n:task_name:\nafter\n"
    for pieces in (1, 5, len(data)):
        rows = rows_of(path, data, pieces)
        assert [r["task_name"] for r in rows] == [None, "ok", "ok", "ok", "ok", None, None]
        assert [r["actor_name"] for r in rows] == [None, None, None, "A", "A", "A", "A"]
        assert rows[0]["job_id"] == "02000000" and rows[2]["job_id"] == "02000000"
        assert rows[2]["worker_id"] == "cd" * 28 and rows[2]["pid"] == 7475 and rows[2]["time"] is None
        assert rows[4]["message"] == "coloured"  # ANSI escapes removed, as LogLineParser does


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> tuple[Path, object, dict]:
    """A 3 MB Ray-shaped session, its tables, and every line as the reference sees it."""
    tmp = tmp_path_factory.mktemp("logsearch")
    store = open_store(str(tmp / "archive"))
    planted = write_session(store, REF, 3_000_000, seed=7, nodes=3, workers=4, copy_to=tmp / "plain", needle_rate=0.01)
    tables = tmp / "tables"
    tables.mkdir()
    nodes = [REF.node(n) for n in store.list_dirs(REF.nodes_prefix)]
    counts = log_tables.build(store, nodes, tables, tmp / "stage", "200MB")
    assert counts["log_lines"] == planted.lines and planted.needles > 5
    return tables, planted, counts


def test_nodes_parsed_in_processes_give_the_same_tables(session, monkeypatch):
    tables, _, _ = session
    tmp = tables.parent
    monkeypatch.setattr(log_tables, "PARALLEL_MIN_BYTES", 0)
    store = open_store(str(tmp / "archive"))
    nodes = [REF.node(n) for n in store.list_dirs(REF.nodes_prefix)]
    parallel = tmp / "parallel"
    parallel.mkdir()
    assert log_tables.build(store, nodes, parallel, tmp / "stage-p", "200MB")["log_lines"] > 0
    for name in ("log_lines.parquet", "log_terms.parquet"):
        assert pq.read_table(parallel / name).equals(pq.read_table(tables / name)), name
    assert not list((tmp / "stage-p").glob("*.arrow"))  # staged blocks are deleted once written


def ask(tables: Path, q: str, mode: str = "terms", limit: int = MAX_LIMIT, cursor=None, **filters):
    backend = ArchiveBackend(lambda ref: tables)
    node = MatchAll() if mode == "regex" else parse(q)
    req = SearchRequest(node, q, mode, q if mode == "regex" else None, SearchFilters(**filters), limit, cursor)
    return backend.search([REF], req)


def reference_lines(tmp_root: Path) -> list[dict]:
    out = []
    for node_dir in sorted((tmp_root / "plain").iterdir()):
        for f in sorted(node_dir.iterdir()):
            lines = FileLines(node_dir.name, f.name)
            for t in [*lines.feed(f.read_bytes()), *lines.flush()]:
                out += t.to_pylist()
    return out


@pytest.fixture(scope="module")
def every_line(session) -> list[dict]:
    tables, _, _ = session
    return reference_lines(tables.parent)


@pytest.mark.parametrize(
    "q",
    [
        NEEDLE_TOKEN,
        "worker",
        "shard*",
        '"checksum mismatch"',
        "traceback and not valueerror",
        "level: FATAL",
        "task_name: preprocess and worker",
        "valueerror or " + NEEDLE_TOKEN,
    ],
)
@pytest.mark.parametrize("materialize", [0, 64])  # candidate blocks read block by block, or once into a table
def test_totals_and_hits_equal_the_reference(session, every_line, q, materialize, monkeypatch):
    monkeypatch.setattr(archive_backend, "MATERIALIZE_BLOCKS", materialize)
    monkeypatch.setattr(archive_backend, "FACET_SCAN_BLOCKS", 1)  # counts from the index wherever they can
    tables, _, _ = session
    node = parse(q)
    want = [r for r in every_line if matches(node, r)]
    answer = ask(tables, q)
    assert answer.total == len(want), q
    got = [(h.node_id, h.file, h.line) for h in answer.hits]
    assert got == [(r["node_id"], r["file"], r["line"]) for r in want][: len(got)]
    assert len(got) == min(len(want), MAX_LIMIT)
    assert sum(answer.facets["node_id"].values()) <= answer.total
    if not any("facets count" in w for w in answer.warnings):
        assert sum(answer.facets["node_id"].values()) == answer.total


def test_filters_and_regex_equal_the_reference(session, every_line):
    tables, planted, _ = session
    node_id, file, _ = planted.needle_sites[0]
    got = ask(tables, NEEDLE_TOKEN, node_id=(node_id,), file=(file,))
    want = [s for s in planted.needle_sites if s[:2] == (node_id, file)]
    assert got.total == len(want) and [(h.node_id, h.file, h.line) for h in got.hits] == want
    pattern = r"Error: shard [0-9]+ checksum [0-9a-f]{8}"
    rx = re.compile(pattern)
    want_rx = [r for r in every_line if rx.search((r["head"] or "") + r["message"])]
    answer = ask(tables, pattern, mode="regex")
    assert answer.total == len(want_rx) == planted.needles
    assert answer.hits[0].match and answer.hits[0].message[slice(*answer.hits[0].match[0])].startswith("Error")
    since = min(r["time"] for r in every_line if r["time"]) + 1
    timed = [r for r in every_line if r["time"] is None or r["time"] >= since]
    assert ask(tables, "*", since=since).total == len(timed)


@pytest.mark.parametrize("materialize", [0, 64])
def test_paging_returns_every_hit_once_in_order(session, materialize, monkeypatch):
    monkeypatch.setattr(archive_backend, "MATERIALIZE_BLOCKS", materialize)
    tables, _, _ = session
    whole = ask(tables, "valueerror")
    seen, cursor = [], None
    while True:
        page = ask(tables, "valueerror", limit=97, cursor=cursor)
        assert page.total == whole.total
        seen += [(h.node_id, h.file, h.line) for h in page.hits]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == whole.total and seen == sorted(set(seen), key=seen.index)


def test_bad_requests_are_refused(session):
    tables, _, _ = session
    with pytest.raises(SearchRefused, match="since"):
        ask(tables, "x", since=10.0, until=5.0)
    with pytest.raises(SearchRefused, match="RE2"):
        ask(tables, "(unclosed", mode="regex")
    with pytest.raises(SearchRefused, match="cursor"):
        ask(tables, "x", cursor="bm90IGEgY3Vyc29y")
    assert "capped" in " ".join(ask(tables, NEEDLE_TOKEN, limit=5000).warnings)


def test_the_archive_answers_with_a_warning_when_sls_is_unreachable(session):
    from historyserver.search.backends import Fallback
    from historyserver.search.errors import SearchUnavailable

    tables, _, _ = session

    class Unreachable:
        name = "sls"

        def search(self, sessions, req):
            raise SearchUnavailable("cannot reach cn-hangzhou.log.aliyuncs.com: connection refused")

        histogram = context = search

    archive = ArchiveBackend(lambda ref: tables)
    req = SearchRequest(parse(NEEDLE_TOKEN), NEEDLE_TOKEN, "terms", None, SearchFilters(), 10, None)
    answer = Fallback(Unreachable(), archive).search([REF], req)
    assert answer.backend == "archive" and answer.total == archive.search([REF], req).total > 0
    assert answer.warnings[0].startswith("SLS is unavailable (cannot reach cn-hangzhou")


def read_back(con, path: Path) -> list[tuple]:
    """(node, file, line, offset, line text) of every stored row, as the backend reads them (archive/compacted.py's
    LOG_HEAD_SQL writes the stamps back)."""
    return con.execute(
        f'SELECT node_id, file, line, "offset", ({LOG_HEAD_SQL}) || message FROM read_parquet(?) '
        "ORDER BY node_id, file, line",
        [str(path)],
    ).fetchall()


def test_stamps_are_derived_and_give_back_every_line(session, every_line):
    tables, _, _ = session
    path = tables / "log_lines.parquet"
    con = duckdb.connect()
    got = read_back(con, path)
    want = [(r["node_id"], r["file"], r["line"], r["offset"], r["head"] + r["message"]) for r in every_line]
    assert got == sorted(want)
    headed, elided = con.execute(
        "SELECT count(*) FILTER (head <> ''), count(*) FILTER (zone IS NOT NULL AND contains(head, chr(1))) "
        "FROM read_parquet(?)",
        [str(path)],
    ).fetchone()
    assert elided == headed > 0  # every header's stamp is written back from time_ms, none stored


def test_stamps_in_another_time_zone_and_odd_heads_come_back_as_written(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30: the written stamp is not UTC
    time.tzset()
    try:
        data = (
            b"[2026-11-25 19:58:17,283 I 7013 7014] (raylet) main.cc:283: one\n"
            b"continued\r\n"
            b"[2026-11-25 19:58:17,999 W 7013 7014] (raylet) main.cc:1: \x1b[31mred\x1b[0m\n"
            b"2026-03-29 01:30:00,005\tINFO utils.py:9 -- py\n"
            b"[2026-11-25 19:58:18,000 E 7013 7014] \xff bad utf-8\n"
            b"tail without newline"
        )
        rows = pa.Table.from_pylist(rows_of("raylet.out", data, 3), schema=SCHEMA)
        stored = log_tables._stored(rows)
        pq.write_table(stored, tmp_path / "t.parquet")
        got = read_back(duckdb.connect(), tmp_path / "t.parquet")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert [(g[3], g[4]) for g in got] == [(r["offset"], r["head"] + r["message"]) for r in rows.to_pylist()]
    assert stored.column("zone").to_pylist()[0] == 19800 and stored.column("head")[0].as_py().startswith("[\x01 I")


def test_a_refresh_with_no_new_log_segment_reuses_the_log_tables(tmp_path, monkeypatch):
    """A running session is compacted again at every refresh: its logs are parsed again only when a segment
    was added (the new lines are then found), never when nothing changed."""
    from benchmarks.synthetic_render import SegmentWriter
    from historyserver.compaction.build import compact

    store = open_store(str(tmp_path / "archive"))
    write_session(store, REF, 300_000, seed=3, nodes=2, workers=2)
    out = tmp_path / "tables"
    compact(store, REF, out, None)
    first = (out / "log_lines.parquet").read_bytes()
    parsed = []
    real = log_tables._node_parts
    monkeypatch.setattr(log_tables, "_node_parts", lambda *a: parsed.append(a) or real(*a))
    compact(store, REF, out, None)
    assert parsed == [] and (out / "log_lines.parquet").read_bytes() == first
    assert ask(out, "worker").total > 0
    writer = SegmentWriter(store, REF.node(store.list_dirs(REF.nodes_prefix)[0]), "fresh.log", 1 << 20)
    writer.write(b"a line with brandnewtoken in it\n")
    writer.close()
    compact(store, REF, out, None)
    assert len(parsed) == 1 and ask(out, "brandnewtoken").total == 1
