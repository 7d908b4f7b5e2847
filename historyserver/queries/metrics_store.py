"""The PromQL engine's SeriesStore over the compacted metric tables of one or many sessions, served from memory.

Each session contributes `metric_series.parquet` (series_id, name, labels MAP) and `metric_samples.parquet`
(series_id, ts_ms, value, sorted by series_id then ts_ms). Dashboards send dozens of selectors per refresh, each
wanting an answer in milliseconds, so nothing is re-read per call:
- a session's series are read once into an index (every label as a column of codes into its distinct values,
  as Prometheus's postings): a selector's matchers are evaluated once per distinct value, then as one numpy gather;
- the samples file is read by row groups into numpy arrays; a series' samples are slices of them (its rows are
  contiguous: the file is sorted). The engine takes a selector's series one at a time (select_stream), so a few row
  groups are decoded at once, however many series the selector matches; decoded groups stay in a byte-bounded LRU
  shared by every session, small by default: the Parquet file stays in the OS page cache, and decoding it again
  (a few ms a row group) is cheaper than holding 16 bytes a sample in the server (issue 16).
Both are keyed by the files' identity (inode, size, mtime), so a session whose tables are rebuilt (a running one)
is read afresh.

Prometheus's label rules: an absent label and an empty one are the same (`{a=""}` matches both), regexes are
anchored at both ends and use RE2 syntax, as Prometheus's Go regexps: they are evaluated by DuckDB's
regexp_full_match (RE2 itself) over each label's distinct values, and a label stored with an empty value is not
part of the series' label set.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from archive.compacted import METRIC_SAMPLES, METRIC_SERIES
from historyserver.promql.errors import BadData
from historyserver.promql.model import Matcher, RawSeries
from historyserver.promql.re2 import regex_full_matches

NAME = "__name__"
# Decoded samples kept in memory, all sessions together (16 bytes a sample, ~2 MB a row group of DuckDB's 122,880
# rows): a day of 50 nodes would be ~350 MB, so only the recently read groups are kept.
CACHE_BYTES = 4 * 2**20  # the default of --metrics-cache-mb; the app passes its own
READ_GROUPS = 1  # row groups decoded per read (~2 MB each, decoded), what a stream holds at once besides the cache
MAX_INDEXES = 256  # sessions whose series index stays loaded (a few hundred bytes a series)

SERIES_FILE = METRIC_SERIES.file
SAMPLES_FILE = METRIC_SAMPLES.file


@dataclass(frozen=True)
class SessionTables:
    """One session's compacted metric tables (the warehouse's directory of that session)."""

    session_id: str
    series: Path
    samples: Path

    @classmethod
    def in_dir(cls, session_id: str, tables_dir: Path) -> SessionTables:
        return cls(session_id, Path(tables_dir) / SERIES_FILE, Path(tables_dir) / SAMPLES_FILE)


class MetricsStore:
    """SeriesStore over a fixed list of sessions' tables. Thread-safe; cheap to create (the indexes and decoded
    samples live in process-wide caches), so one per request is fine."""

    def __init__(self, sessions: Iterable[SessionTables | tuple[str, Path]], cache: MetricsCache | None = None) -> None:
        # The app's cache, shared by requests; a store of its own (tests, one-off scripts) keeps its own.
        self.cache = cache if cache is not None else MetricsCache()
        self.sessions: list[SessionTables] = []
        self._indexes: list[SessionIndex] = []
        for s in sessions:
            t = s if isinstance(s, SessionTables) else SessionTables.in_dir(*s)
            if t.series.is_file() and t.samples.is_file():  # tables built before metrics existed hold none
                self.sessions.append(t)
                self._indexes.append(self.cache.index(t.series, t.samples))
        # Store lookups made (tests and benchmarks read it): one for the matching series and one for their samples
        # per selector, whatever the number of sessions.
        self.queries = 0

    def close(self) -> None:
        pass  # nothing held per instance: the caches outlive requests

    # -- the SeriesStore protocol ---------------------------------------------------------------------------

    def select(self, matchers: list[Matcher], start_ms: int, end_ms: int) -> list[RawSeries]:
        found = self._matching([matchers])
        if not any(len(rows) for rows in found):
            return []
        self.queries += 1
        out: dict[frozenset, RawSeries] = {}
        for index, rows in zip(self._indexes, found):
            if not len(rows) or not index.may_overlap(start_ms, end_ms):
                continue
            for row, (ts, values) in zip(rows.tolist(), index.samples(rows, start_ms, end_ms)):
                if not len(ts):
                    continue
                labels = index.labels(row)
                ident = frozenset(labels.items())
                have = out.get(ident)
                if have is None:
                    out[ident] = RawSeries(labels, ts, values)
                else:  # the same label set in two sessions: one series, as Prometheus would store it
                    have.ts, have.values = _merge(have.ts, have.values, ts, values)
        return list(out.values())

    def select_stream(self, matchers: list[Matcher], start_ms: int, end_ms: int) -> Iterator[RawSeries]:
        """select's series one at a time, reading their row groups as they are reached: the selector's samples are
        never all in memory. Several sessions (a series may be in two) are merged as select merges them."""
        if len(self._indexes) != 1 or self._indexes[0].duplicates:
            yield from self.select(matchers, start_ms, end_ms)
            return
        index = self._indexes[0]
        (rows,) = self._matching([matchers])
        if not len(rows):
            return
        self.queries += 1
        if not index.may_overlap(start_ms, end_ms):
            return
        for row, ts, values in index.stream(rows, start_ms, end_ms):
            if len(ts):
                yield RawSeries(index.labels(row), ts, values)

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

    # -- lookups --------------------------------------------------------------------------------------------

    def _matching(self, match_sets: list[list[Matcher]]) -> list[np.ndarray]:
        """Per session, the rows (in the series table's order) of the series matching any matcher set."""
        if not self._indexes:
            return []
        self.queries += 1
        sets = match_sets or [[]]
        return [index.matching(sets) for index in self._indexes]

    def _in_range(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[dict[str, str]]:
        """Label sets of the matching series that have a sample in [start_ms, end_ms]."""
        found = self._matching(match_sets)
        out = []
        checked = False
        for index, rows in zip(self._indexes, found):
            span = index.time_range
            if not len(rows) or span is None or span[1] < start_ms or span[0] > end_ms:
                continue
            if not (start_ms <= span[0] and span[1] <= end_ms):  # partly covered: check sample by sample
                if not checked:
                    self.queries += 1
                    checked = True
                rows = rows[index.has_samples(rows, start_ms, end_ms)]
            out += [index.labels(r) for r in rows.tolist()]
        return out


# -- one session's tables in memory ------------------------------------------------------------------------------


class _LabelColumn:
    """One label over every series: its distinct values ("" first: absent or empty) and each series' code."""

    def __init__(self, values: list[str], codes: np.ndarray) -> None:
        self.values = values
        self.codes = codes
        self.memo: dict[tuple[str, str], np.ndarray] = {}  # (op, value) -> which distinct values match


class SessionIndex:
    """A session's series table in memory, and where each series' rows lie in its samples file."""

    def __init__(self, series_path: Path, samples_path: Path, key: tuple, groups: _GroupCache) -> None:
        self.key = key
        self._cache = groups
        table = pq.read_table(series_path)
        ids = np.asarray(table.column("series_id").to_numpy(), dtype=np.int64)
        n = self.n = table.num_rows
        # Every (label, value) pair of every series as codes into the distinct names and values, by Arrow's
        # dictionary encoding: a Python object per pair (85,000 for a day of 50 nodes) would leave the heap
        # fragmented (~30 MiB more RSS, measured) after the index is built.
        maps = table.column("labels").combine_chunks()
        name = pc.dictionary_encode(table.column("name").combine_chunks())
        del table
        keys = pc.dictionary_encode(maps.keys)
        items = pc.dictionary_encode(pc.fill_null(maps.items, ""))
        self._keys: list[str] = keys.dictionary.to_pylist() + [NAME]
        self._values: list[str] = items.dictionary.to_pylist()
        entry_row = np.repeat(np.arange(n, dtype=np.int64), np.diff(np.asarray(maps.offsets.to_numpy(), np.int64)))
        kc = np.asarray(keys.indices.to_numpy(), np.int64)
        vc = np.asarray(items.indices.to_numpy(), np.int64)
        stored = np.array([v != "" for v in self._values], dtype=bool)  # a label stored empty is no label
        if len(vc):
            entry_row, kc, vc = entry_row[stored[vc]], kc[stored[vc]], vc[stored[vc]]
        entry_row = np.concatenate((entry_row, np.arange(n, dtype=np.int64)))
        kc = np.concatenate((kc, np.full(n, len(self._keys) - 1, np.int64)))
        vc = np.concatenate((vc, np.asarray(name.indices.to_numpy(), np.int64) + len(self._values)))
        self._values += name.dictionary.to_pylist()
        order = np.lexsort((kc, entry_row))
        self._kc, self._vc = kc[order].astype(np.int32), vc[order].astype(np.int32)
        self._row_start = np.searchsorted(entry_row[order], np.arange(n + 1, dtype=np.int64))
        # Two rows with one label set (they differ only in a label stored empty) are one series: select merges them.
        pairs = (self._kc.astype(np.int64) << 32) | self._vc
        bounds = self._row_start.tolist()
        self.duplicates = len({pairs[a:b].tobytes() for a, b in zip(bounds, bounds[1:])}) != n
        self.columns: dict[str, _LabelColumn] = {}
        for k in np.unique(kc).tolist():
            sel = kc == k
            distinct, code = np.unique(vc[sel], return_inverse=True)
            arr = np.zeros(n, dtype=np.int32)
            arr[entry_row[sel]] = code + 1
            self.columns[self._keys[k]] = _LabelColumn([""] + [self._values[v] for v in distinct.tolist()], arr)
        self._absent = _LabelColumn([""], np.zeros(n, dtype=np.int32))
        self._path = samples_path
        self._file = pq.ParquetFile(samples_path)
        self._lock = threading.Lock()
        meta = self._file.metadata
        self._group_rows = np.array([meta.row_group(g).num_rows for g in range(meta.num_row_groups)], np.int64)
        self._group_start = np.concatenate(([0], np.cumsum(self._group_rows)))
        self.time_range = _ts_stats(meta)
        self._rows(ids)

    def _rows(self, ids: np.ndarray) -> None:
        """Each series' [first, last) row in the samples file (sorted by series_id, so contiguous)."""
        # Read a row group at a time, keeping only where the id changes: the whole column would be 8 bytes a sample.
        run_ids, run_starts, prev, ordered = [], [], None, True
        for g in range(len(self._group_rows)):
            sid = np.asarray(self._file.read_row_group(g, columns=["series_id"]).column(0).to_numpy(), np.int64)
            if not len(sid):
                continue
            cuts = np.flatnonzero(sid[1:] != sid[:-1]) + 1
            if prev is None or sid[0] != prev:
                cuts = np.concatenate(([0], cuts))
            ordered &= bool(np.all(sid[1:] >= sid[:-1])) and (prev is None or sid[0] >= prev)
            run_ids.append(sid[cuts])
            run_starts.append(cuts + self._group_start[g])
            prev = sid[-1]
        self._order = None
        if not ordered:  # not as the compaction writes it: sort the samples in memory, once
            table = self._file.read(columns=["series_id", "ts_ms"])
            sid = np.asarray(table.column("series_id").to_numpy(), np.int64)
            self._order = np.lexsort((table.column("ts_ms").to_numpy(), sid))
            sid = sid[self._order]
            self.first = np.searchsorted(sid, ids, side="left")
            self.last = np.searchsorted(sid, ids, side="right")
            return
        starts = np.concatenate(run_starts) if run_starts else np.empty(0, np.int64)
        uniq = np.concatenate(run_ids) if run_ids else np.empty(0, np.int64)
        ends = np.concatenate((starts[1:], [self._group_start[-1]])).astype(np.int64)
        pos = np.searchsorted(uniq, ids)
        found = (
            (pos < len(uniq)) & (uniq[np.minimum(pos, len(uniq) - 1)] == ids) if len(uniq) else np.zeros(len(ids), bool)
        )
        pos = np.minimum(pos, max(len(uniq) - 1, 0))
        self.first = np.where(found, starts[pos] if len(uniq) else 0, 0).astype(np.int64)
        self.last = np.where(found, ends[pos] if len(uniq) else 0, 0).astype(np.int64)

    def labels(self, row: int) -> dict[str, str]:
        """The label set (with __name__) of a row of the series table."""
        a, b = int(self._row_start[row]), int(self._row_start[row + 1])
        return {self._keys[k]: self._values[v] for k, v in zip(self._kc[a:b].tolist(), self._vc[a:b].tolist())}

    # -- matching ---------------------------------------------------------------------------------------------

    def _column_matches(self, col: _LabelColumn, m: Matcher) -> np.ndarray:
        ok = col.memo.get((m.op, m.value))
        if ok is None:
            if m.op in ("=", "!="):
                ok = np.array([v == m.value for v in col.values], dtype=bool)
            elif m.op in ("=~", "!~"):
                ok = regex_full_matches(m.value, col.values)
            else:
                raise BadData(f"unknown label matcher operator {m.op!r}")
            if m.op in ("!=", "!~"):
                ok = ~ok
            col.memo[(m.op, m.value)] = ok
        return ok

    def matching(self, match_sets: list[list[Matcher]]) -> np.ndarray:
        """Rows of the series matching any of the matcher sets (every set evaluated: a bad regex always fails)."""
        hit = np.zeros(self.n, dtype=bool)
        for ms in match_sets:
            mask = np.ones(self.n, dtype=bool)
            for m in ms:
                col = self.columns.get(m.name, self._absent)
                mask &= self._column_matches(col, m)[col.codes]
            hit |= mask
        return np.flatnonzero(hit)

    # -- samples ----------------------------------------------------------------------------------------------

    def may_overlap(self, start_ms: int, end_ms: int) -> bool:
        span = self.time_range
        return span is not None and span[1] >= start_ms and span[0] <= end_ms

    def _groups(self, groups: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Decoded (ts, value) of row groups, from the shared cache or read (the missing ones in one call)."""
        have = {g: self._cache.get((self.key, g)) for g in groups}
        missing = [g for g, v in have.items() if v is None]
        if missing:
            with self._lock:  # one reader per file; pyarrow decodes the row groups on several threads
                if self._order is None:
                    # A few row groups per read (pyarrow decodes them in parallel) through a reader per read (the
                    # byte ranges a reader pre-buffers stay cached in it): the transient memory stays small.
                    for at in range(0, len(missing), READ_GROUPS):
                        batch = missing[at : at + READ_GROUPS]
                        table = pq.ParquetFile(self._path, pre_buffer=True).read_row_groups(
                            batch, columns=["ts_ms", "value"]
                        )
                        sizes = [int(self._group_rows[g]) for g in batch]
                        ts_parts = _per_group(table.column("ts_ms"), sizes, np.int64)
                        val_parts = _per_group(table.column("value"), sizes, np.float64)
                        del table
                        for g, ts, vals in zip(batch, ts_parts, val_parts):
                            have[g] = (ts, vals)
                else:  # an unsorted file is one cache entry, sorted
                    table = self._file.read(columns=["ts_ms", "value"])
                    have = {
                        0: (
                            np.asarray(table.column("ts_ms").to_numpy(), np.int64)[self._order],
                            np.asarray(table.column("value").to_numpy(), np.float64)[self._order],
                        )
                    }
            for g in missing:
                if g in have:
                    self._cache.put((self.key, g), have[g])
        return have

    def _series_rows(self, rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        first, last = self.first[rows], self.last[rows]
        if self._order is not None:
            ((ts, vals),) = self._groups([0]).values()
            return [(ts[a:b], vals[a:b]) for a, b in zip(first.tolist(), last.tolist())]
        nonempty = last > first
        g_first = np.searchsorted(self._group_start, first[nonempty], side="right") - 1
        g_last = np.searchsorted(self._group_start, last[nonempty] - 1, side="right") - 1
        needed = sorted({g for a, b in zip(g_first.tolist(), g_last.tolist()) for g in range(a, b + 1)})
        groups = self._groups(needed)
        start = self._group_start
        out = []
        for a, b in zip(first.tolist(), last.tolist()):
            if a >= b:
                out.append((np.empty(0, np.int64), np.empty(0, np.float64)))
                continue
            g = int(np.searchsorted(start, a, side="right") - 1)
            if b <= start[g + 1]:  # within one row group: views, no copy
                ts, vals = groups[g]
                out.append((ts[a - start[g] : b - start[g]], vals[a - start[g] : b - start[g]]))
                continue
            parts_t, parts_v = [], []
            while a < b:
                ts, vals = groups[g]
                hi = min(b, int(start[g + 1]))
                parts_t.append(ts[a - start[g] : hi - start[g]])
                parts_v.append(vals[a - start[g] : hi - start[g]])
                a, g = hi, g + 1
            out.append((np.concatenate(parts_t), np.concatenate(parts_v)))
        return out

    def samples(self, rows: np.ndarray, start_ms: int, end_ms: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each row's samples with start_ms <= ts <= end_ms."""
        out = []
        for ts, vals in self._series_rows(rows):
            lo = int(np.searchsorted(ts, start_ms, side="left"))
            hi = int(np.searchsorted(ts, end_ms, side="right"))
            out.append((ts[lo:hi], vals[lo:hi]))
        return out

    def stream(self, rows: np.ndarray, start_ms: int, end_ms: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(row, ts, values) of each row (ascending) with start_ms <= ts <= end_ms, holding at most READ_GROUPS
        decoded row groups (those of the rows at hand and the next ones) besides the shared cache."""
        if self._order is not None:  # an unsorted file is one cache entry anyway
            yield from zip(rows.tolist(), *zip(*self.samples(rows, start_ms, end_ms)))
            return
        start = self._group_start
        first, last = self.first[rows], self.last[rows]
        nonempty = last > first
        g_first = np.searchsorted(start, first[nonempty], side="right") - 1
        g_last = np.searchsorted(start, last[nonempty] - 1, side="right") - 1
        needed = sorted({g for a, b in zip(g_first.tolist(), g_last.tolist()) for g in range(a, b + 1)})
        held: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for row, a, b in zip(rows.tolist(), first.tolist(), last.tolist()):
            if a >= b:
                yield row, np.empty(0, np.int64), np.empty(0, np.float64)
                continue
            ga = int(np.searchsorted(start, a, side="right") - 1)
            gb = int(np.searchsorted(start, b - 1, side="right") - 1)
            if any(g not in held for g in range(ga, gb + 1)):
                held = {g: v for g, v in held.items() if g >= ga}  # rows ascend: earlier groups are done
                at = needed.index(ga)
                ahead = [g for g in needed[at : at + max(READ_GROUPS, gb - ga + 1)] if g not in held]
                held.update(self._groups(ahead))
            if ga == gb:
                ts, vals = held[ga][0][a - start[ga] : b - start[ga]], held[ga][1][a - start[ga] : b - start[ga]]
            else:
                ts = np.concatenate(
                    [
                        held[g][0][max(a, start[g]) - start[g] : min(b, start[g + 1]) - start[g]]
                        for g in range(ga, gb + 1)
                    ]
                )
                vals = np.concatenate(
                    [
                        held[g][1][max(a, start[g]) - start[g] : min(b, start[g + 1]) - start[g]]
                        for g in range(ga, gb + 1)
                    ]
                )
            lo = int(np.searchsorted(ts, start_ms, side="left"))
            hi = int(np.searchsorted(ts, end_ms, side="right"))
            yield row, ts[lo:hi], vals[lo:hi]

    def has_samples(self, rows: np.ndarray, start_ms: int, end_ms: int) -> np.ndarray:
        return np.array([len(ts) > 0 for ts, _ in self.samples(rows, start_ms, end_ms)], dtype=bool)


def _per_group(column, sizes: list[int], dtype) -> list[np.ndarray]:
    """A column read from several row groups, as one array per group. Zero-copy when pyarrow returned a chunk per
    group (the usual case): converting the whole column would copy it, doubling the peak memory of a cold read."""
    chunks = column.chunks
    if [len(c) for c in chunks] == sizes:
        return [np.asarray(c.to_numpy(zero_copy_only=False), dtype=dtype) for c in chunks]
    whole = np.asarray(column.to_numpy(), dtype=dtype)
    bounds = np.concatenate(([0], np.cumsum(sizes))).tolist()
    return [whole[a:b] for a, b in zip(bounds, bounds[1:])]


class _GroupCache:
    """Decoded row groups of every session, least recently used dropped beyond CACHE_BYTES."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.hits = self.misses = 0  # for /metrics
        self._lock = threading.Lock()
        self._items: OrderedDict = OrderedDict()

    def get(self, key):
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return hit

    def put(self, key, value) -> None:
        size = sum(a.nbytes for a in value)
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self.used += size
            self._shrink()

    def resize(self, budget: int) -> None:
        with self._lock:
            self.budget = budget
            self._shrink()

    def _shrink(self) -> None:
        while self.used > self.budget and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self.used -= sum(a.nbytes for a in old)


def _identity(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_ino, st.st_size, st.st_mtime_ns)


class MetricsCache:
    """What the PromQL store keeps between requests, owned by the app (historyserver/app.py builds one): each
    session's series index (MAX_INDEXES sessions) and decoded row groups of samples (a byte budget, LRU)."""

    def __init__(self, budget_bytes: int = CACHE_BYTES) -> None:
        self.groups = _GroupCache(budget_bytes)
        self._lock = threading.Lock()
        self._indexes: OrderedDict[tuple, SessionIndex] = OrderedDict()
        self._opening: dict[tuple, threading.Lock] = {}

    def index(self, series_path: Path, samples_path: Path) -> SessionIndex:
        """The index of a session's tables, read once per version of the files (a rebuilt table is a new file)."""
        key = (_identity(series_path), _identity(samples_path))
        with self._lock:
            index = self._indexes.get(key)
            if index is not None:
                self._indexes.move_to_end(key)
                return index
            lock = self._opening.setdefault(key, threading.Lock())
        with lock:  # one reader per session; others wait for its index
            with self._lock:
                index = self._indexes.get(key)
            if index is None:
                index = SessionIndex(series_path, samples_path, key, self.groups)
                with self._lock:
                    for old in [k for k in self._indexes if k[1][0] == key[1][0]]:
                        del self._indexes[old]  # a previous build of the same session's tables
                    self._indexes[key] = index
                    self._opening.pop(key, None)
                    while len(self._indexes) > MAX_INDEXES:
                        self._indexes.popitem(last=False)
        return index


def _ts_stats(meta) -> tuple[int, int] | None:
    """The first and last sample time, from the Parquet footer's statistics (no data read)."""
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


__all__ = ["MetricsCache", "MetricsStore", "SessionIndex", "SessionTables"]
