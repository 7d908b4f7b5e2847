"""One session's log-search tables (compaction/log_tables.py), read for a search: which blocks a query and its
filters can touch, from the term index and the row groups' min/max, and whether a block's every line passes the
filters (so that a single-term count can come from the index alone)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from archive.compacted import INFO_FILE, LOG_LINES, LOG_TERMS, table_files
from historyserver.queries.session_db import table_paths
from historyserver.search.backend import SearchFilters
from historyserver.search.to_sql import IndexToken

SEARCH_TABLES = (LOG_LINES, LOG_TERMS)  # what a search reads: Warehouse.db(needs=...) waits for a first open's
_MAX_CHAR = "\U0010ffff"
_STATS_COLUMNS = ("node_id", "file", "job_id", "level", "time_ms")


@dataclass(frozen=True)
class BlockStats:
    rows: int
    bounds: dict[str, tuple[object, object, int]]  # column -> (min, max, null count); missing: unknown


class LogIndex:
    """The tables of one session: paths and the row-group statistics of log_lines (read once)."""

    def __init__(self, tables_dir: Path) -> None:
        self.dir = tables_dir
        self.info = info = _info(tables_dir)  # empty when the folder has none
        self.lines = [tables_dir / name for name in table_files(info, LOG_LINES)]
        self.terms = [tables_dir / name for name in table_files(info, LOG_TERMS)]
        self.lines_sql = table_paths(tables_dir, LOG_LINES, info)  # the files as a DuckDB list, for read_parquet
        self._terms_sql = table_paths(tables_dir, LOG_TERMS, info)
        self.blocks: list[BlockStats] = []  # block n is the n-th row group of the lines' files, in order
        for path in self.lines:
            meta = pq.ParquetFile(path).metadata
            names = [meta.schema.column(i).name for i in range(meta.num_columns)]
            for g in range(meta.num_row_groups):
                rg = meta.row_group(g)
                bounds = {}
                for name in _STATS_COLUMNS:
                    st = rg.column(names.index(name)).statistics
                    if st is not None and st.has_min_max:
                        bounds[name] = (st.min, st.max, st.null_count)
                    elif st is not None and st.null_count == rg.num_rows:
                        bounds[name] = (None, None, st.null_count)
                self.blocks.append(BlockStats(rg.num_rows, bounds))

    @property
    def exists(self) -> bool:
        return all(p.exists() for p in (*self.lines, *self.terms))

    # --- the term index --------------------------------------------------------------------------------------
    def token_blocks(
        self, con: duckdb.DuckDBPyConnection, alternatives: list[frozenset[IndexToken]]
    ) -> dict[int, int] | None:
        """Blocks that may hold a match: for each alternative (a set of tokens all required), the blocks holding
        all its tokens; the union over alternatives. Values: for a one-token, non-prefix query, the block's count
        of lines holding the token; otherwise 0 (unknown)."""
        found: dict[int, int] = {}
        single = len(alternatives) == 1 and len(alternatives[0]) == 1 and not next(iter(alternatives[0]))[1]
        for alt in alternatives:
            common: dict[int, int] | None = None
            for token, prefix in alt:
                got = self._lookup(con, token, prefix)
                common = got if common is None else {b: 0 for b in common if b in got}
                if not common:
                    break
            for b, n in (common or {}).items():
                found[b] = n if single else 0
        return found

    def _lookup(self, con: duckdb.DuckDBPyConnection, token: str, prefix: bool) -> dict[int, int]:
        paths = self._terms_sql
        if prefix:
            rows = con.execute(
                f"SELECT block, 0 FROM read_parquet({paths}) WHERE token >= ? AND token <= ? "
                "AND starts_with(token, ?) GROUP BY block",
                [token, token + _MAX_CHAR, token],
            ).fetchall()
        else:
            rows = con.execute(f"SELECT block, lines FROM read_parquet({paths}) WHERE token = ?", [token]).fetchall()
        return {int(b): int(n) for b, n in rows}

    # --- filters by row-group statistics ----------------------------------------------------------------------
    def filtered_blocks(self, filters: SearchFilters) -> list[tuple[int, bool]]:
        """(block, every line passes the filters) for blocks whose statistics allow a line that passes."""
        out = []
        for i, st in enumerate(self.blocks):
            verdict = _block_passes(st, filters)
            if verdict is not None:
                out.append((i, verdict))
        return out


def _info(tables_dir: Path) -> dict:
    """The build's INFO_FILE (which lists a table written as parts); none (tables written alone): one file each."""
    try:
        info: dict = json.loads((tables_dir / INFO_FILE).read_text())
    except FileNotFoundError:
        return {}
    return info


def _block_passes(st: BlockStats, f: SearchFilters) -> bool | None:
    """None: no line of the block can pass; True: every line passes; False: some may."""
    whole = True
    for column, wanted in (("node_id", f.node_id), ("file", f.file), ("job_id", f.job_id), ("level", f.level)):
        if not wanted:
            continue
        b = st.bounds.get(column)
        if b is None:
            whole = False
            continue
        lo, hi, nulls = b
        if lo is None:
            return None  # every value NULL: no line has the wanted value
        if not any(lo <= w <= hi for w in wanted):  # type: ignore[operator]
            return None
        if not (lo == hi and nulls == 0):
            whole = False
    if f.since is not None or f.until is not None:
        b = st.bounds.get("time_ms")
        if b is None:
            return False
        lo, hi, _ = b
        if lo is None:
            return True  # lines without a time are not excluded by a time range
        since = -(2**62) if f.since is None else f.since * 1000
        until = 2**62 if f.until is None else f.until * 1000
        inside_lo, inside_hi = lo >= since, hi < until  # type: ignore[operator]
        if hi < since or lo >= until:  # type: ignore[operator]
            return None if b[2] == 0 else False
        if not (inside_lo and inside_hi):
            whole = False
    return whole


class IndexCache:
    """LogIndex per tables directory, the most recent few kept (their statistics are read once)."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[Path, int], LogIndex] = OrderedDict()

    def get(self, tables_dir: Path) -> LogIndex:
        info = tables_dir / INFO_FILE  # rewritten by every build (parts may be the same files, linked again)
        key = (tables_dir, (info if info.exists() else tables_dir / LOG_LINES.file).stat().st_mtime_ns)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        index = LogIndex(tables_dir)
        with self._lock:
            self._items[key] = index
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return index
