"""Which sessions a PromQL query reads, and the store it reads them through.

A mount point of the Prometheus API covers a list of sessions (one, a cluster's, or the whole archive). A
selector loads only the sessions it can match: the catalog knows each session's name, cluster and time span, so
`SessionName`/`ray_io_cluster` matchers and the query's time range prune the list before any table is opened (or
compacted). This is exact for the archive's series: a session's series carry its own `SessionName` (set by Ray)
or none (the scraper's `up` family), and the `ray_io_cluster` its collector was given, or none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from historyserver.catalog import STALE_AFTER_MS, UNFINISHED, SessionEntry
from historyserver.errors import TooLarge
from historyserver.promql.model import Matcher, RawSeries
from historyserver.queries.metrics_store import MetricsCache, MetricsStore, SessionTables
from historyserver.queries.session_series import FailureCache, SessionSeriesStore, matches, names_only_virtual

# Scrape timestamps come from each node's clock and the end is written after the last upload: keep sessions whose
# span, widened by this much, touches the range.
MARGIN_MS = 5 * 60_000
# What the catalog knows about a session, as the label a selector would test.
CATALOG_LABELS = {"SessionName": lambda e: e.manifest.session_name, "ray_io_cluster": lambda e: e.manifest.cluster}


def session_span(entry: SessionEntry, now_ms: int) -> tuple[int, int]:
    m = entry.manifest
    start = (m.start_ms or 0) - MARGIN_MS
    if entry.end_ms is None:  # running: samples up to now
        return start, now_ms + MARGIN_MS
    # An unfinished session's end is its last heartbeat; segments may have been shipped until it went silent.
    return start, entry.end_ms + (STALE_AFTER_MS if entry.status == UNFINISHED else MARGIN_MS)


def could_match(entry: SessionEntry, matchers: list[Matcher]) -> bool:
    """False only when a matcher on a catalog-known label fails both for the session's value and for a series
    that lacks the label (which such a matcher might still select)."""
    for m in matchers:
        known = CATALOG_LABELS.get(m.name)
        if known is None:
            continue
        try:
            if not matches(m, known(entry)) and not matches(m, ""):
                return False
        except Exception:  # a regex Python cannot read but RE2 might: keep the session, DuckDB decides
            continue
    return True


class ArchiveStore:
    """SeriesStore over the scope's sessions: each call opens (once per instance) the tables of the sessions its
    matchers and range can touch, plus the catalog-derived session series. Meant to live for one request."""

    def __init__(
        self,
        entries: list[SessionEntry],
        open_tables: Callable[[SessionEntry], Path],
        failures: FailureCache | None = None,
        now_ms: int | None = None,
        max_sessions: int | None = None,
        cache: MetricsCache | None = None,
    ) -> None:
        self.entries = entries
        self.max_sessions = max_sessions
        self.cache = cache if cache is not None else MetricsCache()  # the app's, shared by requests
        self.now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self._open_tables = open_tables
        self.virtual = SessionSeriesStore(entries, failures, self.now_ms)
        self._lock = threading.Lock()
        self._tables: dict[str, SessionTables] = {}
        self._stores: dict[frozenset, MetricsStore] = {}

    @property
    def loaded(self) -> list[str]:
        """Ids of the sessions whose tables this store opened."""
        return sorted(self._tables)

    def sessions_for(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[SessionEntry]:
        sets = match_sets or [[]]
        out = []
        for entry in self.entries:
            lo, hi = session_span(entry, self.now_ms)
            if hi < start_ms or lo > end_ms:
                continue
            if any(could_match(entry, ms) for ms in sets if not names_only_virtual(ms)):
                out.append(entry)
        return out

    def _store(self, entries: list[SessionEntry]) -> MetricsStore | None:
        if not entries:
            return None
        if self.max_sessions is not None and len(entries) > self.max_sessions:
            raise TooLarge(
                f"this selector would read {len(entries)} sessions, more than --query-max-sessions="
                f"{self.max_sessions}; narrow it with a SessionName or ray_io_cluster matcher, a shorter time range, "
                "or query one cluster's or session's prefix (/clusters/{namespace}/{cluster}/prometheus/api/v1/, "
                "/sessions/{id}/prometheus/api/v1/)"
            )
        with self._lock:
            for entry in entries:
                sid = entry.ref.id
                if sid not in self._tables:
                    self._tables[sid] = SessionTables.in_dir(sid, self._open_tables(entry))
            key = frozenset(e.ref.id for e in entries)
            store = self._stores.get(key)
            if store is None:
                store = self._stores[key] = MetricsStore([self._tables[e.ref.id] for e in entries], self.cache)
            return store

    def close(self) -> None:
        for store in self._stores.values():
            store.close()

    # -- SeriesStore ------------------------------------------------------------------------------------------

    def select(self, matchers: list[Matcher], start_ms: int, end_ms: int) -> list[RawSeries]:
        out = self.virtual.select(matchers, start_ms, end_ms)
        store = self._store(self.sessions_for([matchers], start_ms, end_ms))
        if store is not None:
            out += store.select(matchers, start_ms, end_ms)
        return out

    def select_stream(self, matchers: list[Matcher], start_ms: int, end_ms: int) -> Iterator[RawSeries]:
        yield from self.virtual.select(matchers, start_ms, end_ms)
        store = self._store(self.sessions_for([matchers], start_ms, end_ms))
        if store is not None:
            yield from store.select_stream(matchers, start_ms, end_ms)

    def label_names(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[str]:
        names = set(self.virtual.label_names(match_sets, start_ms, end_ms))
        store = self._store(self.sessions_for(match_sets, start_ms, end_ms))
        if store is not None:
            names.update(store.label_names(_archive_sets(match_sets), start_ms, end_ms))
        return sorted(names)

    def label_values(self, name: str, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[str]:
        values = set(self.virtual.label_values(name, match_sets, start_ms, end_ms))
        store = self._store(self.sessions_for(match_sets, start_ms, end_ms))
        if store is not None:
            values.update(store.label_values(name, _archive_sets(match_sets), start_ms, end_ms))
        return sorted(values)

    def series(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[dict[str, str]]:
        out = self.virtual.series(match_sets, start_ms, end_ms)
        store = self._store(self.sessions_for(match_sets, start_ms, end_ms))
        if store is not None:
            out += store.series(_archive_sets(match_sets), start_ms, end_ms)
        return out


def _archive_sets(match_sets: list[list[Matcher]]) -> list[list[Matcher]]:
    """The matcher sets the archive's tables can answer (those naming a virtual series cannot). An empty result
    from a non-empty input means: none; the callers only reach here when some session is a candidate."""
    kept = [ms for ms in match_sets if not names_only_virtual(ms)]
    return kept if kept or not match_sets else [[Matcher("__name__", "=", "")]]
