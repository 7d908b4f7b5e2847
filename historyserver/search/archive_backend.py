"""Log search over the archive's compacted log tables (compaction/log_tables.py), with DuckDB.

For each session (in the order given): the blocks that can hold a match are those the filters' row-group
statistics allow, narrowed by the term index when the query (or the regex's literals) requires message tokens.
Totals are exact: a single-term query counts from the index where a block's every line passes the filters, every
other count scans the candidate blocks. Hits come in table order (node, file, line) per session, after the
session's matching task/actor/job errors; the cursor holds the position after the last hit returned.
"""

from __future__ import annotations

import base64
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import duckdb

from archive.layout import SessionRef
from historyserver.search import error_hits
from historyserver.search.backend import (
    FACETS,
    MAX_LIMIT,
    ContextAnswer,
    ContextLine,
    Hit,
    SearchAnswer,
    SearchFilters,
    SearchRequest,
)
from historyserver.search.errors import SearchRefused
from historyserver.search.log_index import IndexCache, LogIndex
from historyserver.search.log_rows import HEAD, LINE, around
from historyserver.search.match import highlight
from historyserver.search.pending import Pending
from historyserver.search.query import MatchAll, Node, Term
from historyserver.search.regex import Regex, compile_regex, required_index_tokens
from historyserver.search.to_sql import required_tokens, to_sql

QUERY_MEMORY = "512MB"  # DuckDB's memory for one search (it spills beyond)
FACET_SCAN_BLOCKS = 48  # when a count came from the index, facets count the matches of at most this many blocks
MATERIALIZE_BLOCKS = 64  # this few candidate blocks are read once for count, facets and page
FACET_TOP = 20  # values per facet
PAGE_STEPS = (2, 8, 32, 128)  # blocks read per step while filling a page (most pages fill in the first)
MAX_CONTEXT = 200  # lines before and after, each
ERROR_KINDS = ("task_error", "actor_error", "job_error")
_HIT_COLUMNS = (
    'node_id, file, line, "offset", time_ms, level, job_id, worker_id, pid, component, task_name, actor_name, '
    f"{HEAD} AS head, message, block"
)
_REGEX_SQL = f"regexp_matches({LINE}, ?)"


@dataclass
class _Where:
    sql: str
    params: list[Any]
    tokens: list[frozenset[tuple[str, bool]]] | None  # what the term index can narrow by; None: scan
    single: bool  # one message term: its count per block is in the index
    regex: Regex | None


class ArchiveBackend:
    name = "archive"

    def __init__(
        self,
        tables_dir: Callable[[SessionRef], Path],
        cache: IndexCache | None = None,
        pending: Pending | None = None,
    ) -> None:
        """`tables_dir` gives a session's compacted tables directory (compacting it first if needed); with
        `pending` (searches across sessions), sessions whose tables are not built yet are left out instead."""
        self.tables_dir = tables_dir
        self.cache = cache or IndexCache()
        self.pending = pending

    def _ready(self, sessions: Sequence[SessionRef]) -> list[SessionRef]:
        if self.pending is None:
            return list(sessions)
        return [ref for ref in sessions if not self.pending.skip(ref)]

    # --- search -----------------------------------------------------------------------------------------
    def search(self, sessions: Sequence[SessionRef], req: SearchRequest) -> SearchAnswer:
        warnings: list[str] = []
        limit = _limit(req.limit, warnings)
        _where(req)  # refuses a bad request before any session is opened
        cursor = _Cursor.decode(req.cursor)
        hits: list[Hit] = []
        total = 0
        facets: dict[str, Counter[str]] = {f: Counter() for f in FACETS}
        partial_facets = False
        started = cursor is None
        seen = cursor.seen if cursor else 0
        last: _Cursor | None = None
        sessions = self._ready(sessions)
        con = _connect()
        try:
            for ref in sessions:
                where = _where(req, ref.session)
                index = self.cache.get(self.tables_dir(ref))
                errors = (
                    None
                    if req.filters.file
                    else error_hits.matching(
                        index.dir,
                        index.info,
                        _filters_sql(req.filters),
                        (where.sql, where.params),
                        _REGEX_SQL if where.regex else None,
                    )
                )
                counted, partial, matched = _count(con, index, req.filters, where, facets)
                partial_facets |= partial
                total += counted + error_hits.count(con, errors, facets)
                if len(hits) >= limit:
                    continue  # only counting now
                if not started:
                    assert cursor is not None
                    if ref.id != cursor.session:
                        continue
                    started = True
                    page_from = cursor
                else:
                    page_from = None
                if page_from is None or page_from.kind == "error":
                    first = max(page_from.error + 1, 0) if page_from else 0
                    found = error_hits.page(con, errors, ref, first, limit - len(hits), _highlighter(req, where))
                    for i, h in enumerate(found, start=first):
                        hits.append(h)
                        last = _Cursor(ref.id, "error", i, -1, "", "", 0, 0)
                if len(hits) < limit:
                    after = page_from if page_from and page_from.kind == "log" else None
                    got = _page(con, index, ref, req.filters, where, after, limit - len(hits), req.query, matched)
                    for h, pos in got:
                        hits.append(h)
                        last = pos
        finally:
            con.close()
        next_cursor = None
        if last is not None and seen + len(hits) < total:
            last.seen = seen + len(hits)
            next_cursor = last.encode()
        if partial_facets:
            warnings.append(
                f"facets count the matches of the first {FACET_SCAN_BLOCKS} blocks of {BLOCK_NAME} per session "
                "(the total is exact); narrow the search for exact facets"
            )
        waiting = self.pending.warnings() if self.pending else []
        warnings[:0] = waiting
        return SearchAnswer(
            backend="archive",
            complete=not waiting,
            total=total,
            hits=hits,
            next_cursor=next_cursor,
            facets={k: dict(v.most_common(FACET_TOP)) for k, v in facets.items()},
            warnings=warnings,
            pending_sessions=len(self.pending.refs) if self.pending else 0,
        )

    # --- histogram ----------------------------------------------------------------------------------------
    def histogram(self, sessions: Sequence[SessionRef], req: SearchRequest, buckets: int) -> list[tuple[float, int]]:
        _where(req)
        buckets = max(1, min(buckets, 1000))
        sessions = self._ready(sessions)
        con = _connect()
        try:
            indexes = [self.cache.get(self.tables_dir(ref)) for ref in sessions]
            lo, hi = _time_range(indexes, req.filters)
            if lo is None or hi is None:
                return []
            width = max((hi - lo) / buckets, 0.001)
            counts = [0] * buckets
            for ref, index in zip(sessions, indexes):
                where = _where(req, ref.session)
                blocks = _candidates(con, index, req.filters, where)
                if not blocks:
                    continue
                sql, params = _scan_sql(index, req.filters, where, list(blocks))
                rows = con.execute(
                    f"SELECT least(greatest(floor((time_ms / 1000.0 - ?) / ?), 0), {buckets - 1})::INT AS b, "
                    f"count(*) FROM ({sql}) WHERE time_ms IS NOT NULL GROUP BY b",
                    [lo, width, *params],
                ).fetchall()
                for b, n in rows:
                    counts[int(b)] += int(n)
            return [(lo + i * width, n) for i, n in enumerate(counts)]
        finally:
            con.close()

    # --- context --------------------------------------------------------------------------------------------
    def context(
        self, session: SessionRef, node_id: str, file: str, line: int, before: int, after: int
    ) -> ContextAnswer:
        warnings = []
        if before > MAX_CONTEXT or after > MAX_CONTEXT:
            warnings.append(f"before and after are capped at {MAX_CONTEXT} lines each")
        before, after = max(0, min(before, MAX_CONTEXT)), max(0, min(after, MAX_CONTEXT))
        index = self.cache.get(self.tables_dir(session))
        con = _connect()
        try:
            rows = around(con, index.lines_sql, node_id, file, line - before, line + after)
        finally:
            con.close()
        lines = [
            ContextLine(int(n), int(o), text, None if t is None else t / 1000, lvl, task, actor)
            for n, o, text, t, lvl, task, actor in rows
        ]
        return ContextAnswer(session.id, node_id, file, line, lines, warnings)


BLOCK_NAME = "16,384 lines"


def _connect() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:", config={"memory_limit": QUERY_MEMORY, "threads": 2})


def _q(path: Path) -> str:
    return str(path).replace("'", "''")


def _limit(limit: int, warnings: list[str]) -> int:
    if limit < 1:
        raise SearchRefused(f"limit must be at least 1, got {limit}")
    if limit > MAX_LIMIT:
        warnings.append(f"limit {limit} capped at {MAX_LIMIT} hits per page; follow next_cursor for more")
        return MAX_LIMIT
    return limit


def _where(req: SearchRequest, session: str = "") -> _Where:
    """The line predicate (over log_lines' columns) and what narrows it; `session: name` compares with the
    session's name (a checked name: no quote in it)."""
    f = req.filters
    for name, t in (("since", f.since), ("until", f.until)):
        if t is not None and not (math.isfinite(t) and abs(t) <= 1e11):
            raise SearchRefused(f"{name}={t!r} is not a time in epoch seconds")
    if f.since is not None and f.until is not None and f.since > f.until:
        raise SearchRefused(f"since ({f.since:g}) is after until ({f.until:g})")
    columns = {"pid": "CAST(pid AS VARCHAR)", "session": "'" + session.replace("'", "''") + "'"}
    sql, params = to_sql(req.query, columns, lowered=("node_id", "job_id", "worker_id"))
    tokens = required_tokens(req.query)
    single = isinstance(req.query, Term) and req.query.field == "message" and not req.query.prefix
    regex = None
    if req.mode == "regex":
        regex = compile_regex(req.regex or "")
        sql = f"({sql}) AND {_REGEX_SQL}"
        params.append(regex.re2)
        literal = required_index_tokens(regex.pattern)
        if literal:
            tokens = [alt | literal for alt in tokens] if tokens else [literal]
        single = False
    return _Where(sql, params, tokens, single, regex)


def _filters_sql(f: SearchFilters) -> tuple[str, list[Any]]:
    parts, params = [], []
    for column, values in (("node_id", f.node_id), ("file", f.file), ("job_id", f.job_id)):
        if values:
            parts.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
    if f.level:
        parts.append(f"upper(level) IN ({', '.join('?' * len(f.level))})")
        params.extend(v.upper() for v in f.level)
    if f.since is not None:
        parts.append("(time_ms IS NULL OR time_ms >= ?)")
        params.append(int(f.since * 1000))
    if f.until is not None:
        parts.append("(time_ms IS NULL OR time_ms < ?)")
        params.append(int(f.until * 1000))
    return " AND ".join(parts) or "TRUE", params


def _candidates(
    con: duckdb.DuckDBPyConnection, index: LogIndex, f: SearchFilters, where: _Where
) -> dict[int, int | None]:
    """block -> the index's count of its matching lines when every line of the block passes the filters and the
    query is one term; None when the block must be scanned."""
    allowed = index.filtered_blocks(f)
    if where.tokens is None:
        return {b: None for b, _ in allowed}
    by_token = index.token_blocks(con, where.tokens) or {}
    out: dict[int, int | None] = {}
    for b, whole in allowed:
        if b in by_token:
            out[b] = by_token[b] if (whole and where.single) else None
    return out


def _scan_sql(index: LogIndex, f: SearchFilters, where: _Where, blocks: list[int] | None) -> tuple[str, list[Any]]:
    """The matching lines of the blocks (None: of every block)."""
    fsql, fparams = _filters_sql(f)
    among = "TRUE" if blocks is None else f"block IN ({', '.join(str(b) for b in blocks) or 'NULL'})"
    return (
        f"SELECT {_HIT_COLUMNS} FROM read_parquet({index.lines_sql}) WHERE {among} AND {fsql} AND {where.sql}",
        [*fparams, *where.params],
    )


def _count(
    con: duckdb.DuckDBPyConnection,
    index: LogIndex,
    f: SearchFilters,
    where: _Where,
    facets: dict[str, Counter[str]],
) -> tuple[int, bool, bool]:
    """The session's count of matching lines (exact), adding to facets; (count, facets partial, matched).
    A few candidate blocks are read once: their matching lines go to the temp table `matched`, which the page
    reads too (`matched` True)."""
    blocks = _candidates(con, index, f, where)
    if len(blocks) <= MATERIALIZE_BLOCKS:
        sql, params = _scan_sql(index, f, where, sorted(blocks))
        con.execute(f"CREATE OR REPLACE TEMP TABLE matched AS {sql}", params)
        rows = con.execute("SELECT TRUE, node_id, file, level, job_id, count(*) FROM matched GROUP BY ALL").fetchall()
        _add_facets(rows, facets)
        return sum(r[-1] for r in rows), False, True
    known = {b: n for b, n in blocks.items() if n is not None}
    scan = sorted(b for b, n in blocks.items() if n is None)
    total = sum(known.values())
    partial = False
    facet_blocks = scan
    if known:
        room = max(0, FACET_SCAN_BLOCKS - len(scan))
        sample = sorted(known)[:room]
        partial = len(sample) < len(known)
        facet_blocks = sorted(scan + sample)
    if facet_blocks:
        every = len(facet_blocks) == len(index.blocks)
        sql, params = _scan_sql(index, f, where, None if every else facet_blocks)
        scanned = "TRUE" if not known else f"block IN ({', '.join(str(b) for b in scan) or 'NULL'})"
        rows = con.execute(
            f"SELECT {scanned} AS scanned, node_id, file, level, job_id, count(*) FROM ({sql}) GROUP BY ALL", params
        ).fetchall()
        total += sum(r[-1] for r in rows if r[0])
        _add_facets(rows, facets)
    return total, partial, False


def _add_facets(rows: list[tuple[Any, ...]], facets: dict[str, Counter[str]]) -> None:
    for _, node, file, level, job, n in rows:
        for name, value in (("node_id", node), ("file", file), ("level", level), ("job_id", job)):
            if value:
                facets[name][value] += n


def _page(
    con: duckdb.DuckDBPyConnection,
    index: LogIndex,
    ref: SessionRef,
    f: SearchFilters,
    where: _Where,
    after: _Cursor | None,
    want: int,
    query: Node,
    matched: bool,
) -> list[tuple[Hit, _Cursor]]:
    """The next `want` hits of the session after `after`, in table order: from `matched` when _count made it, else
    reading the candidate blocks a few at a time (a common term's page fills from the first ones)."""
    if matched:
        return _page_rows(con, ref, "SELECT * FROM matched", [], where, after, want, query)
    blocks = sorted(_candidates(con, index, f, where))
    if after is not None:
        blocks = [b for b in blocks if b >= after.block]
    out: list[tuple[Hit, _Cursor]] = []
    step = iter(PAGE_STEPS)
    pos = 0
    while blocks[pos:] and len(out) < want:
        n = next(step, PAGE_STEPS[-1])
        chunk = blocks[pos : pos + n]
        pos += n
        sql, params = _scan_sql(index, f, where, chunk)
        out += _page_rows(con, ref, sql, params, where, after, want - len(out), query)
    return out


def _page_rows(
    con: duckdb.DuckDBPyConnection,
    ref: SessionRef,
    sql: str,
    params: list[Any],
    where: _Where,
    after: _Cursor | None,
    want: int,
    query: Node,
) -> list[tuple[Hit, _Cursor]]:
    tail = ""
    if after is not None:
        tail = " WHERE (block, node_id, file, line) > (?, ?, ?, ?)"  # a table's parts each start at node 0
        params = [*params, after.block, after.node_id, after.file, after.line]
    rows = con.execute(
        f"SELECT * FROM ({sql}){tail} ORDER BY block, node_id, file, line LIMIT {want}", params
    ).fetchall()
    return [
        (
            _log_hit(ref, row, query, where.regex),
            _Cursor(ref.id, "log", -1, int(row[14]), row[0], row[1], int(row[2]), 0),
        )
        for row in rows
    ]


def _log_hit(ref: SessionRef, row: tuple[Any, ...], query: Node, regex: Regex | None) -> Hit:
    node_id, file, line, offset, time_ms, level, job, worker, pid, comp, task, actor, head, message, _ = row
    if regex is not None:
        shift = len(head or "")
        match = [(max(a - shift, 0), b - shift) for a, b in regex.highlight((head or "") + message) if b > shift]
    else:
        match = highlight(query, message) if not isinstance(query, MatchAll) else []
    return Hit(
        kind="log",
        session=ref.id,
        node_id=node_id,
        file=file,
        line=int(line),
        offset=int(offset),
        time=None if time_ms is None else time_ms / 1000,
        level=level,
        job_id=job,
        message=message,
        match=match,
        url=log_view_url(ref.id, node_id, file, int(line)),
        task_name=task,
        actor_name=actor,
        worker_id=worker,
        pid=None if pid is None else int(pid),
        component=comp,
    )


def log_view_url(session_id: str, node_id: str, file: str, line: int) -> str:
    query = urlencode({"node_id": node_id, "file": file, "line": line})
    return f"/sessions/{quote(session_id, safe='')}/logs/view?{query}#L{line}"


def _highlighter(req: SearchRequest, where: _Where) -> Callable[[str], list[tuple[int, int]]]:
    """What of an error's message the query matched."""
    if where.regex is not None:
        return where.regex.highlight
    if isinstance(req.query, MatchAll):
        return lambda message: []
    return lambda message: highlight(req.query, message)


def _time_range(indexes: list[LogIndex], f: SearchFilters) -> tuple[float | None, float | None]:
    lo, hi = f.since, f.until
    if lo is None or hi is None:
        mins = [b.bounds["time_ms"][0] for i in indexes for b in i.blocks if b.bounds.get("time_ms", (None,))[0]]
        maxs = [b.bounds["time_ms"][1] for i in indexes for b in i.blocks if b.bounds.get("time_ms", (None,))[0]]
        if lo is None and mins:
            lo = min(mins) / 1000  # type: ignore[operator]
        if hi is None and maxs:
            hi = max(maxs) / 1000 + 0.001  # type: ignore[operator]
    return lo, hi


# --- the cursor -------------------------------------------------------------------------------------------------
@dataclass
class _Cursor:
    """Where the next page starts: after error `error` of the session, or after its line (node, file, line) in
    block `block`. Opaque to clients (base64 JSON), stable while the session's tables are."""

    session: str
    kind: str  # "error" | "log"
    error: int
    block: int
    node_id: str
    file: str
    line: int
    seen: int  # hits returned before this page

    def encode(self) -> str:
        doc = [1, self.session, self.kind, self.error, self.block, self.node_id, self.file, self.line, self.seen]
        return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str | None) -> _Cursor | None:
        if not text:
            return None
        try:
            doc = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            version, *fields = doc
            types = (str, str, int, int, str, str, int, int)
            if version != 1 or len(fields) != 8 or not all(type(v) is t for v, t in zip(fields, types, strict=True)):
                raise ValueError
            return cls(*fields)
        except (ValueError, TypeError):
            raise SearchRefused("the cursor is not one this server gave: start again without it") from None
