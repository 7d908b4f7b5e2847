"""The PromQL engine's SeriesStore over the compacted metric tables of one or many sessions, with DuckDB.

Each session contributes `metric_series.parquet` (series_id, name, labels MAP) and `metric_samples.parquet`
(series_id, ts_ms, value, sorted by series_id then ts_ms). A selector becomes two queries whatever the number of
sessions: the series that match (a UNION ALL over the sessions' series tables, matchers as SQL on the `name`
column and the labels MAP), then their samples in the time range (a UNION ALL over the samples tables filtered by
an IN list of series ids, which DuckDB checks against each Parquet row group's min/max, so only the row groups
that hold those series are read). Samples come back as Arrow columns and are cut into per-series numpy arrays.

Prometheus's label rules: an absent label and an empty one are the same (`{a=""}` matches both), regexes are
anchored at both ends (regexp_full_match, RE2 syntax, as Prometheus's Go regexps), and a label stored with an
empty value is not part of the series' label set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import duckdb
import numpy as np
import pyarrow.parquet as pq

from historyserver.promql.errors import BadData
from historyserver.promql.model import Matcher, RawSeries

NAME = "__name__"
SERIES_FILE = "metric_series.parquet"
SAMPLES_FILE = "metric_samples.parquet"


@dataclass(frozen=True)
class SessionTables:
    """One session's compacted metric tables (the warehouse's directory of that session)."""

    session_id: str
    series: Path
    samples: Path

    @classmethod
    def in_dir(cls, session_id: str, tables_dir: Path) -> "SessionTables":
        return cls(session_id, Path(tables_dir) / SERIES_FILE, Path(tables_dir) / SAMPLES_FILE)


def _lit(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def matcher_sql(m: Matcher) -> tuple[str, list[Any]]:
    """One matcher as a SQL condition on a metric_series row, with its parameters."""
    if m.name == NAME:
        col, params = "name", []
    else:
        col, params = "coalesce(labels[?], '')", [m.name]
    if m.op == "=":
        return f"{col} = ?", params + [m.value]
    if m.op == "!=":
        return f"{col} <> ?", params + [m.value]
    if m.op == "=~":
        return f"regexp_full_match({col}, ?)", params + [m.value]
    if m.op == "!~":
        return f"NOT regexp_full_match({col}, ?)", params + [m.value]
    raise BadData(f"unknown label matcher operator {m.op!r}")


def where_sql(matchers: Sequence[Matcher]) -> tuple[str, list[Any]]:
    parts, params = [], []
    for m in matchers:
        sql, p = matcher_sql(m)
        parts.append(sql)
        params += p
    return (" AND ".join(parts) or "TRUE"), params


class MetricsStore:
    """SeriesStore over a fixed list of sessions' tables. Thread-safe: one DuckDB cursor per call."""

    def __init__(self, sessions: Iterable[SessionTables | tuple[str, Path]]) -> None:
        self.sessions: list[SessionTables] = []
        for s in sessions:
            t = s if isinstance(s, SessionTables) else SessionTables.in_dir(*s)
            if t.series.is_file() and t.samples.is_file():  # tables built before metrics existed hold none
                self.sessions.append(t)
        self._con = duckdb.connect(":memory:")
        self._ranges: dict[int, tuple[int, int] | None] = {}
        self.queries = 0  # SQL statements run (tests and benchmarks read it)

    def close(self) -> None:
        self._con.close()

    # -- the SeriesStore protocol ---------------------------------------------------------------------------

    def select(self, matchers: list[Matcher], start_ms: int, end_ms: int) -> list[RawSeries]:
        found = self._matching([matchers])
        if not found:
            return []
        arrays = self._samples(found, start_ms, end_ms)
        out: dict[frozenset, RawSeries] = {}
        for key, (ts, values) in arrays.items():
            labels = found[key]
            ident = frozenset(labels.items())
            have = out.get(ident)
            if have is None:
                out[ident] = RawSeries(labels, ts, values)
            else:  # the same label set in two sessions: one series, as Prometheus would store it
                have.ts, have.values = _merge(have.ts, have.values, ts, values)
        return list(out.values())

    def label_names(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[str]:
        names: set[str] = set()
        for labels in self._in_range(match_sets, start_ms, end_ms):
            names.update(labels)
        return sorted(names)

    def label_values(self, name: str, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[str]:
        values = {labels.get(name, "") for labels in self._in_range(match_sets, start_ms, end_ms)}
        values.discard("")
        return sorted(values)

    def series(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[dict[str, str]]:
        unique = {frozenset(labels.items()): labels for labels in self._in_range(match_sets, start_ms, end_ms)}
        return list(unique.values())

    # -- queries --------------------------------------------------------------------------------------------

    def _query(self, sql: str, params: list[Any]):
        cur = self._con.cursor()
        try:
            self.queries += 1
            return cur.execute(sql, params).to_arrow_table()
        except duckdb.InvalidInputException as e:  # an invalid regex: RE2 refuses it when the query runs
            raise BadData(f"invalid regular expression in a label matcher: {e}") from e
        finally:
            cur.close()

    def _matching(self, match_sets: list[list[Matcher]]) -> dict[tuple[int, int], dict[str, str]]:
        """(session index, series_id) -> label set with __name__, for the series matching any matcher set."""
        if not self.sessions:
            return {}
        sets = match_sets or [[]]
        conds, cond_params = [], []
        for ms in sets:
            sql, p = where_sql(ms)
            conds.append(f"({sql})")
            cond_params += p
        cond = " OR ".join(conds)
        parts, params = [], []
        for i, t in enumerate(self.sessions):
            parts.append(f"SELECT {i}::INTEGER AS s, series_id, name, labels FROM read_parquet({_lit(t.series)}) "
                         f"WHERE {cond}")
            params += cond_params
        table = self._query(" UNION ALL ".join(parts), params)
        out: dict[tuple[int, int], dict[str, str]] = {}
        for s, sid, name, pairs in zip(table.column("s").to_pylist(), table.column("series_id").to_pylist(),
                                       table.column("name").to_pylist(), table.column("labels").to_pylist()):
            labels = {k: v for k, v in (pairs or []) if v}
            labels[NAME] = name
            out[(s, sid)] = labels
        return out

    def _samples(self, found: dict[tuple[int, int], dict[str, str]], start_ms: int,
                 end_ms: int) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
        by_session: dict[int, list[int]] = {}
        for s, sid in found:
            by_session.setdefault(s, []).append(sid)
        parts, params = [], []
        for s, ids in sorted(by_session.items()):
            if not self._may_overlap(s, start_ms, end_ms):
                continue
            id_list = ",".join(str(int(i)) for i in sorted(ids))  # integers from our own table: safe literals
            parts.append(f"SELECT {s}::INTEGER AS s, series_id, ts_ms, value FROM read_parquet("
                         f"{_lit(self.sessions[s].samples)}) WHERE series_id IN ({id_list}) "
                         "AND ts_ms BETWEEN ? AND ?")
            params += [start_ms, end_ms]
        if not parts:
            return {}
        table = self._query(" UNION ALL ".join(parts), params)
        sess = table.column("s").to_numpy()
        sid = table.column("series_id").to_numpy()
        ts = table.column("ts_ms").to_numpy()
        values = table.column("value").to_numpy()
        if len(ts) > 1:
            # DuckDB keeps each file's order (sorted by series, then time); check rather than trust it.
            ordered = (np.all(sess[1:] >= sess[:-1]) and np.all((sess[1:] > sess[:-1]) | (sid[1:] >= sid[:-1]))
                       and np.all((sess[1:] != sess[:-1]) | (sid[1:] != sid[:-1]) | (ts[1:] > ts[:-1])))
            if not ordered:
                order = np.lexsort((ts, sid, sess))
                sess, sid, ts, values = sess[order], sid[order], ts[order], values[order]
        cuts = np.flatnonzero((sess[1:] != sess[:-1]) | (sid[1:] != sid[:-1])) + 1
        bounds = np.concatenate(([0], cuts, [len(ts)])) if len(ts) else np.array([0])
        out = {}
        for a, b in zip(bounds[:-1], bounds[1:]):
            out[(int(sess[a]), int(sid[a]))] = (ts[a:b], values[a:b])
        return out

    def _in_range(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[dict[str, str]]:
        """Label sets of the matching series that have a sample in [start_ms, end_ms]."""
        found = self._matching(match_sets)
        if not found:
            return []
        keep: set[tuple[int, int]] = set()
        by_session: dict[int, list[int]] = {}
        for s, sid in found:
            by_session.setdefault(s, []).append(sid)
        parts, params = [], []
        for s, ids in by_session.items():
            span = self._time_range(s)
            if span is None or span[1] < start_ms or span[0] > end_ms:
                continue
            if start_ms <= span[0] and span[1] <= end_ms:  # the range holds the whole session: no sample check
                keep.update((s, sid) for sid in ids)
                continue
            id_list = ",".join(str(int(i)) for i in sorted(ids))
            parts.append(f"SELECT DISTINCT {s}::INTEGER AS s, series_id FROM read_parquet("
                         f"{_lit(self.sessions[s].samples)}) WHERE series_id IN ({id_list}) AND ts_ms BETWEEN ? AND ?")
            params += [start_ms, end_ms]
        if parts:
            table = self._query(" UNION ALL ".join(parts), params)
            keep.update(zip(table.column("s").to_pylist(), table.column("series_id").to_pylist()))
        return [labels for key, labels in found.items() if key in keep]

    def _time_range(self, s: int) -> tuple[int, int] | None:
        """The session's first and last sample time, from the Parquet footer's statistics (no data read)."""
        if s not in self._ranges:
            self._ranges[s] = _ts_stats(self.sessions[s].samples)
        return self._ranges[s]

    def _may_overlap(self, s: int, start_ms: int, end_ms: int) -> bool:
        span = self._time_range(s)
        return span is not None and span[1] >= start_ms and span[0] <= end_ms


def _ts_stats(path: Path) -> tuple[int, int] | None:
    meta = pq.ParquetFile(path).metadata
    if meta.num_rows == 0:
        return None
    col = meta.schema.names.index("ts_ms")
    lo, hi = None, None
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max:
            return (-(2**63), 2**63 - 1)  # no statistics: assume anything
        lo = stats.min if lo is None else min(lo, stats.min)
        hi = stats.max if hi is None else max(hi, stats.max)
    return (lo, hi) if lo is not None else None


def _merge(ts_a: np.ndarray, v_a: np.ndarray, ts_b: np.ndarray, v_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ts = np.concatenate((ts_a, ts_b))
    values = np.concatenate((v_a, v_b))
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    keep = np.concatenate(([True], ts[1:] != ts[:-1])) if len(ts) else np.array([], bool)
    return ts[keep], values[keep]
