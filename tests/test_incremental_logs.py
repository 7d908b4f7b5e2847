"""The log-search tables folded while a session is archived (historyserver/compaction/log_parts.py): parts
appended fold by fold, across restarts of the server and of the collector, end with the one-shot build's lines
(every line once, same numbers and fields), and searching them answers as searching the one-shot tables does."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from archive.compacted import FILES, LOG_LINES, LOG_TERMS
from archive.layout import LogSegment
from archive.logs import encode
from archive.storage.local import LocalStore
from historyserver.compaction import checkpoint, log_parts
from historyserver.compaction.incremental import Folder
from historyserver.compaction.incremental_build import compact_folded
from historyserver.queries.session_db import table_paths
from historyserver.search.archive_backend import ArchiveBackend
from historyserver.search.backend import SearchRequest
from historyserver.search.query import parse
from tests.test_incremental import _streamed, fold_through_restarts, synthetic  # noqa: F401 (the module's fixture)

LINE_COLUMNS = "* EXCLUDE (block)"  # blocks are numbered per part: everything else is the one-shot's


def _line_differences(a: Path, b: Path) -> tuple[int, int, int]:
    con = duckdb.connect()
    x, y = (f"SELECT {LINE_COLUMNS} FROM read_parquet({table_paths(d, LOG_LINES)})" for d in (a, b))
    rows = con.execute(f"SELECT count(*) FROM ({x})").fetchone()[0]
    only_a = con.execute(f"SELECT count(*) FROM ({x} EXCEPT ALL {y})").fetchone()[0]
    only_b = con.execute(f"SELECT count(*) FROM ({y} EXCEPT ALL {x})").fetchone()[0]
    return rows, only_a, only_b


def _term_lines(d: Path) -> dict[str, int]:
    """Lines holding each token, over the whole table (the term index's answer whatever the blocks)."""
    con = duckdb.connect()
    rows = con.execute(f"SELECT token, sum(lines) FROM read_parquet({table_paths(d, LOG_TERMS)}) GROUP BY token")
    return {t: int(n) for t, n in rows.fetchall()}


def _all_hits(tables: Path, ref, text: str, limit: int) -> tuple[int, list[tuple]]:
    """The total, and every hit (log lines and tasks' errors) followed page by page through next_cursor."""
    backend = ArchiveBackend(lambda _: tables)
    hits: list[tuple] = []
    cursor, total = None, None
    for _ in range(10_000):
        answer = backend.search([ref], SearchRequest(query=parse(text), text=text, limit=limit, cursor=cursor))
        total = answer.total if total is None else total
        hits += [(h.kind, h.node_id or "", h.file or "", h.line or 0, h.message) for h in answer.hits]
        cursor = answer.next_cursor
        if cursor is None:
            return total, hits
    raise AssertionError("the cursor never ended")


def test_log_parts_folded_across_restarts_are_the_one_shot_lines(synthetic, tmp_path, monkeypatch):  # noqa: F811
    src, ref, end_ms, one_shot, _ = synthetic
    monkeypatch.setattr(log_parts, "PART_BYTES", 1)  # a part at every fold
    monkeypatch.setattr(log_parts, "BATCH_BYTES", 50_000)  # files split across parts, mid-run
    monkeypatch.setattr(log_parts, "MAX_PARTS", 4)  # and parts merged
    monkeypatch.setattr(log_parts, "MERGED", 3)
    dst = LocalStore(tmp_path / "archive")
    stream = _streamed(src, ref, dst, batches=6)
    state = tmp_path / "state"
    assert fold_through_restarts(stream, dst, ref, state, monkeypatch)[1] == 1
    cp = checkpoint.load(state)
    assert not cp.logs_broken and 2 <= len(cp.log_parts) <= 4
    assert any(p.lines.endswith("m.parquet") for p in cp.log_parts)
    stream.end()
    tables = tmp_path / "tables"
    built = compact_folded(Folder(dst, ref, state), tables, end_ms)
    assert built[FILES][LOG_LINES.name] == [f"log_lines.{i:04d}.parquet" for i in range(len(cp.log_parts) + 1)]
    assert len(built[FILES][LOG_TERMS.name]) == len(cp.log_parts) + 1
    rows, only_one_shot, only_folded = _line_differences(one_shot, tables)
    assert rows > 1_000 and (only_one_shot, only_folded) == (0, 0)
    assert built["counts"][LOG_LINES.name] == rows
    assert _term_lines(tables) == _term_lines(one_shot)
    # Blocks are numbered across the parts, in order: block n is the n-th row group of the files.
    groups = [
        pq.ParquetFile(tables / name).read_row_group(g, columns=["block"]).column("block").unique().to_pylist()
        for name in built[FILES][LOG_LINES.name]
        for g in range(pq.ParquetFile(tables / name).num_row_groups)
    ]
    assert groups == [[n] for n in range(len(groups))] and len(groups) > len(cp.log_parts) + 1
    con = duckdb.connect()
    # Searching the parts: the same totals, and paging through them gives every hit once.
    common = con.execute(
        f"SELECT token FROM read_parquet({table_paths(one_shot, LOG_TERMS)}) GROUP BY token "
        "HAVING sum(lines) BETWEEN 200 AND 2000 ORDER BY sum(lines) DESC, token LIMIT 1"
    ).fetchone()[0]
    for text in (common, f"{common} OR level: ERROR"):
        total, hits = _all_hits(tables, ref, text, limit=97)
        expected_total, expected = _all_hits(one_shot, ref, text, limit=500)
        assert total == expected_total and len(hits) == total
        assert sorted(hits) == sorted(expected)
        lines = [h for h in hits if h[0] == "log"]
        assert lines and len(set(lines)) == len(lines)  # no line twice (two tasks' errors may read the same)


def test_a_file_replaced_after_it_was_indexed_builds_the_log_tables_whole(synthetic, tmp_path, monkeypatch):  # noqa: F811
    src, ref, end_ms, one_shot, _ = synthetic
    monkeypatch.setattr(log_parts, "PART_BYTES", 1)
    dst = LocalStore(tmp_path / "archive")
    stream = _streamed(src, ref, dst, batches=3, written=2)
    state = tmp_path / "state"
    Folder(dst, ref, state).fold_all()
    assert checkpoint.load(state).log_parts
    # A log file truncated after its lines were parsed: the archive holds its next generation, which the one-shot
    # build reads instead of the first.
    node_id = sorted(dst.list_dirs(ref.nodes_prefix))[0]
    node = ref.node(node_id)
    path = "raylet.out"
    dst.put(node.segment_key(LogSegment(path, 1, 0, 12)), encode(b"fresh start\n"))
    Folder(dst, ref, state).fold_all()
    cp = checkpoint.load(state)
    assert "raylet.out" in cp.logs_broken and not cp.log_parts
    stream.write_batch()
    stream.end()
    built = compact_folded(Folder(dst, ref, state), tmp_path / "tables", end_ms)
    assert LOG_LINES.name not in built[FILES]  # one file, built whole
    con = duckdb.connect()
    lines = con.execute(
        f"SELECT line, message FROM read_parquet('{tmp_path / 'tables' / LOG_LINES.file}') "
        "WHERE node_id = ? AND file = ?",
        [node_id, path],
    ).fetchall()
    assert lines == [(1, "fresh start")]
