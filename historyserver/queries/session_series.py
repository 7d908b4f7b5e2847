"""Virtual series about the sessions themselves, computed from the catalog, for a "Ray history" dashboard.

Every series carries `namespace`, `ray_io_cluster`, `SessionName` and `status` (running, ended, unfinished), so
Ray's own variables (`$Cluster`, `$SessionName`) filter them, and has a sample every 60 s, at multiples of 60 s
(Unix time), from the session's start to its end (for an unfinished session, the last time its collector was
heard from; for a running one, now), and one at its end: a query at or after the end sees the session's final
values, and a session within one minute is never invisible.

- `rayhistory_session_up`: 1.
- `rayhistory_session_duration_seconds`: seconds since the session started.
- `rayhistory_session_nodes`: nodes the manifest lists (every node whose collector registered).
- `rayhistory_session_failed_jobs`: jobs that ended FAILED so far (a step up at each failed job's end time; one
  without an end time counts from the last sample, at the session's end).
- `rayhistory_session_failed_tasks`: task attempts that ended FAILED so far, counted the same way.

The two failure counts come from the session's compacted tables when this server already holds them (a closed
session is compacted in the background when it ends): they never trigger a compaction, so a session not compacted
yet has no failure series until it is. The names share the prefix `rayhistory_session_`, which the archive's
scraped series never use, so a selector naming one of them reads no session's tables.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np

from archive.compacted import INFO_FILE, JOBS, TASKS
from historyserver.catalog import SessionEntry
from historyserver.promql.errors import BadData
from historyserver.promql.model import Matcher, RawSeries
from historyserver.promql.re2 import full_match
from historyserver.queries.session_db import table_paths

PREFIX = "rayhistory_session_"
UP = PREFIX + "up"
DURATION = PREFIX + "duration_seconds"
NODES = PREFIX + "nodes"
FAILED_JOBS = PREFIX + "failed_jobs"
FAILED_TASKS = PREFIX + "failed_tasks"
NAMES = (UP, DURATION, NODES, FAILED_JOBS, FAILED_TASKS)
STEP_MS = 60_000
NAME = "__name__"


def session_labels(entry: SessionEntry) -> dict[str, str]:
    m = entry.manifest
    return {
        "namespace": m.namespace,
        "ray_io_cluster": m.cluster,
        "SessionName": m.session_name,
        "status": entry.status,
    }


def matches(m: Matcher, value: str) -> bool:
    """Prometheus's matching of one label value (absent is ''), regexes anchored and run by RE2 as Prometheus's:
    Python's backtracking re takes exponential time on a pattern such as `(.|.)*Z` over a session's name."""
    if m.op == "=":
        return value == m.value
    if m.op == "!=":
        return value != m.value
    hit = full_match(m.value, value)
    return hit if m.op == "=~" else not hit


def _lenient(m: Matcher, value: str) -> bool:
    """A regex Python cannot read (RE2 syntax it lacks) selects no virtual series instead of failing the query:
    the archive's tables, matched by RE2 itself, still answer."""
    try:
        return matches(m, value)
    except BadData:
        return False


def names_only_virtual(matchers: list[Matcher]) -> bool:
    """True when a __name__ equality names a virtual series: the archive's tables cannot hold it."""
    return any(m.name == NAME and m.op == "=" and m.value.startswith(PREFIX) for m in matchers)


class Failures:
    """End times (ms) of failed jobs and task attempts, read once from a closed session's compacted tables."""

    def __init__(self, tables_dir: Path, session_end_ms: int) -> None:
        con = duckdb.connect(":memory:")
        try:
            jobs = con.execute(
                f"SELECT record FROM read_parquet('{_quote(tables_dir / JOBS.file)}') WHERE status = 'FAILED'"
            ).fetchall()
            tasks = con.execute(
                f"SELECT end_time_ms FROM read_parquet({table_paths(tables_dir, TASKS)}) WHERE state = 'FAILED'"
            ).fetchall()
        finally:
            con.close()
        job_ends = []
        for (record,) in jobs:
            end = (json.loads(record) or {}).get("end_time")
            job_ends.append(int(end) if isinstance(end, (int, float)) and end > 0 else session_end_ms)
        self.jobs = np.sort(np.array(job_ends, dtype=np.int64))
        self.tasks = np.sort(np.array([int(t) if t else session_end_ms for (t,) in tasks], dtype=np.int64))


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


class FailureCache:
    """Failures per closed session, read from the compacted tables a warehouse already holds, never building them.

    `tables_dir(entry)` answers the directory of a session's finished tables, or None when there are none yet."""

    def __init__(self, tables_dir: Callable[[SessionEntry], Path | None]) -> None:
        self._tables_dir = tables_dir
        self._lock = threading.Lock()
        self._known: dict[str, Failures] = {}

    def get(self, entry: SessionEntry, end_ms: int) -> Failures | None:
        sid = entry.ref.id
        with self._lock:
            if sid in self._known:
                return self._known[sid]
        if not entry.closed:
            return None  # still changing: its counts would be stale by the next refresh
        path = self._tables_dir(entry)
        if path is None:
            return None
        try:
            failures = Failures(path, end_ms)
        except (duckdb.Error, OSError, ValueError):
            return None  # tables being replaced, or of an unexpected shape: no failure series for now
        with self._lock:
            self._known[sid] = failures
        return failures


def warehouse_tables(warehouse) -> Callable[[SessionEntry], Path | None]:
    """The directory where `warehouse` keeps a session's tables, if it holds a closed build of them."""

    def find(entry: SessionEntry) -> Path | None:
        path = Path(warehouse.root) / entry.ref.id
        try:
            info = json.loads((path / INFO_FILE).read_text())
        except (OSError, ValueError):
            return None
        return path if info.get("closed") else None

    return find


class SessionSeriesStore:
    """The SeriesStore of the virtual series of a list of sessions."""

    def __init__(
        self, entries: list[SessionEntry], failures: FailureCache | None = None, now_ms: int | None = None
    ) -> None:
        self.entries = entries
        self.failures = failures
        self.now_ms = int(time.time() * 1000) if now_ms is None else now_ms

    def span(self, entry: SessionEntry) -> tuple[int, int] | None:
        m = entry.manifest
        if m.start_ms is None:
            return None
        end = entry.end_ms if entry.end_ms is not None else self.now_ms
        return m.start_ms, max(end, m.start_ms)

    def _candidates(self, matchers: list[Matcher]):
        """(entry, labels, names) for the sessions whose labels pass every non-name matcher."""
        name_ms = [m for m in matchers if m.name == NAME]
        names = [n for n in NAMES if all(_lenient(m, n) for m in name_ms)]
        if not names:
            return
        others = [m for m in matchers if m.name != NAME]
        for entry in self.entries:
            labels = session_labels(entry)
            if all(_lenient(m, labels.get(m.name, "")) for m in others):
                yield entry, labels, names

    def select(self, matchers: list[Matcher], start_ms: int, end_ms: int) -> list[RawSeries]:
        out = []
        for entry, labels, names in self._candidates(matchers):
            span = self.span(entry)
            if span is None:
                continue
            ts = grid(span[0], span[1], start_ms, end_ms)
            if not len(ts):
                continue
            for name in names:
                values = self._values(name, entry, span, ts)
                if values is not None:
                    out.append(RawSeries({**labels, NAME: name}, ts, values))
        return out

    def _values(self, name: str, entry: SessionEntry, span: tuple[int, int], ts: np.ndarray) -> np.ndarray | None:
        if name == UP:
            return np.ones(len(ts))
        if name == DURATION:
            return (ts - span[0]) / 1000.0
        if name == NODES:
            return np.full(len(ts), float(len(entry.manifest.nodes)))
        failures = self.failures.get(entry, span[1]) if self.failures else None
        if failures is None:
            return None
        ends = failures.jobs if name == FAILED_JOBS else failures.tasks
        ends = np.minimum(ends, span[1])  # the final sample, at the session's end, holds every failure
        return np.searchsorted(ends, ts, side="right").astype(np.float64)

    def _label_sets(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[dict[str, str]]:
        seen: dict[tuple, dict[str, str]] = {}
        for matchers in match_sets or [[]]:
            for s in self.select(matchers, start_ms, end_ms):
                seen.setdefault(tuple(sorted(s.labels.items())), s.labels)
        return list(seen.values())

    def label_names(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[str]:
        return sorted({k for labels in self._label_sets(match_sets, start_ms, end_ms) for k in labels})

    def label_values(self, name: str, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[str]:
        values = {labels.get(name, "") for labels in self._label_sets(match_sets, start_ms, end_ms)}
        values.discard("")
        return sorted(values)

    def series(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[dict[str, str]]:
        return self._label_sets(match_sets, start_ms, end_ms)


def grid(first_ms: int, last_ms: int, start_ms: int, end_ms: int) -> np.ndarray:
    """The 60 s boundaries in [first_ms, last_ms] and last_ms itself, clipped to the requested [start_ms, end_ms]."""
    lo = max(-(-first_ms // STEP_MS) * STEP_MS, -(-start_ms // STEP_MS) * STEP_MS)
    hi = min(last_ms // STEP_MS * STEP_MS, end_ms // STEP_MS * STEP_MS)
    points = np.arange(lo, hi + 1, STEP_MS, dtype=np.int64) if lo <= hi else np.empty(0, dtype=np.int64)
    if start_ms <= last_ms <= end_ms and last_ms % STEP_MS:
        points = np.append(points, np.int64(last_ms))
    return points
