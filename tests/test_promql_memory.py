"""PromQL's memory does not grow with a selector (issue 16): the engine reduces each series to its steps before it
reads the next, and the Parquet store decodes a few row groups at a time. Fast: local files and memory stores."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive.compacted import METRIC_SAMPLES, METRIC_SERIES
from historyserver.promql.engine import Engine
from historyserver.promql.memory_store import MemoryStore
from historyserver.promql.model import Matcher, RawSeries
from historyserver.queries import metrics_store
from historyserver.queries.metrics_store import MetricsCache, MetricsStore, SessionTables

T0 = 1_700_000_000_000
SCRAPE_MS = 15_000
N_SERIES, N_SAMPLES = 40, 60


def make_series() -> list[RawSeries]:
    out = []
    for i in range(N_SERIES):
        ts = T0 + np.arange(N_SAMPLES, dtype=np.int64) * SCRAPE_MS + i * 7
        values = np.cumsum(np.arange(N_SAMPLES, dtype=np.float64) % (i + 2))  # a counter, some resets below
        if i % 5 == 0:
            values[N_SAMPLES // 2 :] -= values[N_SAMPLES // 2]
        out.append(RawSeries({"__name__": "c", "node": f"n{i:02d}", "kind": "ab"[i % 2]}, ts, values))
    return out


class Watched(MemoryStore):
    """A MemoryStore that counts, whenever it yields a series, how many earlier ones the engine still holds."""

    def __init__(self, series: list[RawSeries]) -> None:
        super().__init__(series)
        self.all = series
        self.most_alive = 0

    def select_stream(self, matchers: list[Matcher], start_ms: int, end_ms: int) -> Iterator[RawSeries]:
        refs: list[weakref.ref] = []
        for one in self.all:  # selected one at a time, as a store reading its files would
            [s] = MemoryStore([one]).select(matchers, start_ms, end_ms) or [None]
            if s is None:
                continue
            s = RawSeries(s.labels, s.ts.copy(), s.values.copy())
            self.most_alive = max(self.most_alive, sum(r() is not None for r in refs))
            refs += [weakref.ref(s.ts), weakref.ref(s.values)]
            yield s
            del s


QUERIES = [
    "sum(c) by (kind)",
    "sum(rate(c[2m])) by (kind)",
    "max_over_time(c[1m])",
    "c / on(node, kind) (c + 1)",
    "sum(increase(c[5m]))",
]


@pytest.mark.parametrize("expr", QUERIES)
def test_the_engine_holds_one_series_of_a_selector_at_a_time(expr):
    series = make_series()
    watched = Watched(series)
    start, end, step = T0, T0 + N_SAMPLES * SCRAPE_MS, 30_000
    got = Engine(watched).range(expr, start, end, step).to_json()
    # One series' arrays (ts and values) at a time; an engine that kept the selector's samples would hold 2 x 40.
    assert watched.most_alive <= 2
    assert got == Engine(MemoryStore(make_series())).range(expr, start, end, step).to_json()
    assert got["result"]


def write_tables(tmp_path, series: list[RawSeries], rows_per_group: int) -> SessionTables:
    ids = np.arange(len(series), dtype=np.int64)
    pq.write_table(
        pa.Table.from_arrays(
            [
                pa.array(ids, pa.int64()),
                pa.array([s.labels["__name__"] for s in series], pa.string()),
                pa.array(
                    [[(k, v) for k, v in s.labels.items() if k != "__name__"] for s in series],
                    METRIC_SERIES.schema.field("labels").type,
                ),
            ],
            schema=METRIC_SERIES.schema,
        ),
        tmp_path / METRIC_SERIES.file,
    )
    samples = pa.Table.from_arrays(
        [
            pa.array(np.repeat(ids, [len(s.ts) for s in series])),
            pa.array(np.concatenate([s.ts for s in series])),
            pa.array(np.concatenate([s.values for s in series])),
        ],
        schema=METRIC_SAMPLES.schema,
    )
    pq.write_table(samples, tmp_path / METRIC_SAMPLES.file, row_group_size=rows_per_group)
    return SessionTables.in_dir("s", tmp_path)


def test_the_parquet_store_decodes_a_few_row_groups_at_a_time(tmp_path, monkeypatch):
    series = make_series()
    tables = write_tables(tmp_path, series, rows_per_group=50)  # 48 row groups; a series spans at most 3
    monkeypatch.setattr(metrics_store, "READ_GROUPS", 3)
    reads: list[list[int]] = []
    real = metrics_store.SessionIndex._groups

    def spy(self, groups):
        reads.append(list(groups))
        return real(self, groups)

    monkeypatch.setattr(metrics_store.SessionIndex, "_groups", spy)
    store = MetricsStore([tables], MetricsCache(budget_bytes=1))  # keeps nothing between reads
    matchers = [Matcher("__name__", "=", "c"), Matcher("kind", "=", "a")]
    start, end = T0 + 10 * SCRAPE_MS, T0 + 50 * SCRAPE_MS
    streamed = [(s.labels, s.ts.tolist(), s.values.tolist()) for s in store.select_stream(matchers, start, end)]
    assert reads and max(len(r) for r in reads) <= 3
    assert sorted(g for r in reads for g in r) == sorted({g for r in reads for g in r})  # each group read once
    whole = [(s.labels, s.ts.tolist(), s.values.tolist()) for s in store.select(matchers, start, end)]
    assert streamed == whole and len(streamed) == N_SERIES // 2
    want = [s for s in series if s.labels["kind"] == "a"]
    lo, hi = np.searchsorted(want[0].ts, start), np.searchsorted(want[0].ts, end, "right")
    assert streamed[0][1] == want[0].ts[lo:hi].tolist() and streamed[0][2] == want[0].values[lo:hi].tolist()
    # And through the engine, the answers are those of the memory store.
    expr = 'sum(rate(c{kind="a"}[2m])) + sum(c{kind="a"})'
    ours = Engine(MetricsStore([tables], MetricsCache(budget_bytes=1))).range(expr, start, end, 30_000).to_json()
    assert ours == Engine(MemoryStore(make_series())).range(expr, start, end, 30_000).to_json()
