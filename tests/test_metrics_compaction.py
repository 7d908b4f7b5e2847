"""Archived metric scrapes compacted into metric_series / metric_samples, in the collector's own format."""

from __future__ import annotations

import duckdb
import pytest

from archive.layout import LogSegment, SessionRef
from archive.logs import encode
from archive.metrics_blocks import render
from archive.metrics_blocks import scrape_header as _scrape_families
from archive.storage.local import LocalStore
from collector.sources.metrics import MetricsScraper, to_openmetrics
from historyserver.compaction.export_events import Damage
from historyserver.compaction.metrics import compact_metrics
from tests import needs
from tests.metrics_scrapes import REFERENCE, SESSION, STEP, T0, up
from tests.servers.loopback import LoopbackHTTP

NODES = ("a" * 56, "b" * 56)
SERIES_PER_NODE = 3 + 1 + 1 + 5  # up/scrape_duration/scrape_samples + counter + gauge + histogram (3 le, sum, count)


def exposition(i: int) -> str:
    """Ray's text format: a counter (with the `_created` gauge Ray's Python endpoints add), a gauge, a histogram."""
    s = f'SessionName="{SESSION}",Component="raylet"'
    return f"""# HELP ray_tasks_finished Tasks finished.
# TYPE ray_tasks_finished counter
ray_tasks_finished_total{{{s}}} {10 * i}.0
# HELP ray_tasks_finished_created Tasks finished.
# TYPE ray_tasks_finished_created gauge
ray_tasks_finished_created{{{s}}} 1.7e+09
# HELP ray_object_store_used_memory Used memory.
# TYPE ray_object_store_used_memory gauge
ray_object_store_used_memory{{{s}}} {1000 + i}.5
# HELP ray_task_latency_ms Latency.
# TYPE ray_task_latency_ms histogram
ray_task_latency_ms_bucket{{{s},le="1"}} {i}.0
ray_task_latency_ms_bucket{{{s},le="10"}} {2 * i}.0
ray_task_latency_ms_bucket{{{s},le="+Inf"}} {3 * i}.0
ray_task_latency_ms_sum{{{s}}} {7 * i}.0
ray_task_latency_ms_count{{{s}}} {3 * i}.0
"""


def block(node: int, i: int) -> bytes:
    """One scrape block exactly as MetricsScraper writes it."""
    labels = {"job": "ray", "ray_io_cluster": "demo", "instance": f"10.0.0.{node + 1}:8080"}
    ts = T0 + i * STEP
    families, count = to_openmetrics(exposition(i), labels, ts)
    return render(_scrape_families(labels, ts, 1, 0.01, count) + families)


def corrupt_block() -> bytes:
    good = block(0, 99).decode()
    return good.replace(" 990.0 ", " not-a-number ").encode()  # the counter's sample line, broken


def put_file(store: LocalStore, node_id: str, path: str, data: bytes, cuts: list[int], epoch: int = 0) -> None:
    node = SessionRef("default", "demo", SESSION).node(node_id)
    bounds = [0, *cuts, len(data)]
    for start, end in zip(bounds, bounds[1:]):
        seg = LogSegment(path, epoch, start, end, source="metrics")
        store.put(node.segment_key(seg), encode(data[start:end]))


@pytest.fixture(scope="module")
def compacted(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    store = LocalStore(root / "archive")
    # Node a: five scrapes and a corrupt block in the middle, shipped in two segments cut mid-line.
    a = b"".join(block(0, i) for i in range(3)) + corrupt_block() + b"".join(block(0, i) for i in range(3, 5))
    cut = a.index(b"ray_object_store_used_memory{", len(a) // 2) + 12
    put_file(store, NODES[0], "metrics-000001.prom", a, [cut])
    # Node b: five scrapes, then a second file repeating the last two (a re-shipped range) and ending in a line
    # whose write failed (no newline): the repeats count once, the unterminated line is dropped.
    b = [block(1, i) for i in range(5)]
    put_file(store, NODES[1], "metrics-000001.prom", b"".join(b), [])
    put_file(store, NODES[1], "metrics-000002.prom", b[3] + b[4] + b"# HELP up 1 if", [len(b[3]) + 7])
    damage = Damage()
    counts = compact_metrics(store, SessionRef("default", "demo", SESSION), list(NODES), root / "tables", damage)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW s AS SELECT * FROM '{root / 'tables' / 'metric_series.parquet'}'")
    con.execute(f"CREATE VIEW p AS SELECT * FROM '{root / 'tables' / 'metric_samples.parquet'}'")
    yield counts, damage, con, root / "tables"
    con.close()


def test_series_are_name_plus_sorted_labels_with_target_labels_kept(compacted):
    counts, _, con, tables = compacted
    assert counts["metric_series"] == 2 * SERIES_PER_NODE
    assert con.execute("SELECT count(*), count(DISTINCT series_id) FROM s").fetchone() == (20, 20)
    assert not (tables / "stage-metrics").exists()
    [(labels,)] = con.execute(
        "SELECT labels FROM s WHERE name = 'ray_tasks_finished_total' AND labels['instance'] = '10.0.0.2:8080'"
    ).fetchall()
    assert labels == {
        "Component": "raylet",
        "SessionName": SESSION,
        "instance": "10.0.0.2:8080",
        "job": "ray",
        "ray_io_cluster": "demo",
    }
    assert list(labels) == sorted(labels)
    les = con.execute(
        "SELECT list(labels['le'] ORDER BY labels['le']) FROM s WHERE name = 'ray_task_latency_ms_bucket'"
        " AND labels['instance'] = '10.0.0.1:8080'"
    ).fetchone()[0]
    assert les == ["+Inf", "1.0", "10.0"]
    names = {n for (n,) in con.execute("SELECT DISTINCT name FROM s").fetchall()}
    assert "ray_tasks_finished_created" not in names  # Prometheus drops `_created` when it ingests OpenMetrics
    assert {"up", "scrape_duration_seconds", "scrape_samples_scraped"} <= names


def test_samples_have_ms_timestamps_values_and_count_once(compacted):
    counts, _, con, _ = compacted
    assert counts["metric_samples"] == 2 * 5 * SERIES_PER_NODE  # node b's repeated scrapes add nothing
    assert con.execute("SELECT count(*) FROM (SELECT DISTINCT series_id, ts_ms FROM p)").fetchone()[0] == 100
    rows = con.execute(
        """
        SELECT p.ts_ms, p.value FROM p JOIN s USING (series_id)
        WHERE s.name = 'ray_task_latency_ms_bucket' AND s.labels['le'] = '10.0' AND s.labels['instance'] = ?
        ORDER BY p.ts_ms""",
        ["10.0.0.1:8080"],
    ).fetchall()
    assert rows == [(T0 + i * STEP, 2.0 * i) for i in range(5)]
    gauge = con.execute(
        "SELECT list(value ORDER BY ts_ms) FROM p JOIN s USING (series_id) "
        "WHERE name = 'ray_object_store_used_memory' AND labels['instance'] = '10.0.0.2:8080'"
    ).fetchone()[0]
    assert gauge == [1000.5 + i for i in range(5)]
    order = con.execute("SELECT series_id, ts_ms FROM p").fetchall()
    assert order == sorted(order)


def test_a_corrupt_block_is_damage_and_the_rest_is_kept(compacted):
    _, damage, con, _ = compacted
    assert damage.bad_lines == 1
    assert "metrics/metrics-000001.prom block 4" in damage.examples[0] and NODES[0][:12] in damage.examples[0]
    # Nothing of the corrupt block (scrape 99) is kept, not even the samples parsed before the broken line.
    assert con.execute("SELECT count(*) FROM p WHERE ts_ms = ?", [T0 + 99 * STEP]).fetchone()[0] == 0


def test_a_real_scraper_spool_of_ray_metrics(tmp_path):
    body = "".join(
        line[len("[:8080] ") :]
        for line in needs.reference("metrics", REFERENCE.name).read_text().splitlines(keepends=True)
        if line.startswith("[:8080] ")
    ).encode()
    # The :8080 part of the reference exposition of a real Ray 2.60 node, served on 127.0.0.1.
    endpoint = LoopbackHTTP(lambda path, headers: (200, "text/plain; version=0.0.4; charset=utf-8", body))
    try:
        scraper = MetricsScraper(tmp_path / "spool", cluster="demo", targets=[endpoint.address])
        for _ in range(2):
            assert scraper.scrape_once().scrapes_ok == 1
        scraper.close()
    finally:
        endpoint.close()
    store = LocalStore(tmp_path / "archive")
    for f in sorted((tmp_path / "spool").glob("metrics-*.prom")):
        data = f.read_bytes()
        put_file(store, NODES[0], f.name, data, [len(data) // 3, 2 * len(data) // 3])
    damage = Damage()
    counts = compact_metrics(store, SessionRef("default", "demo", SESSION), [NODES[0]], tmp_path / "t", damage)
    assert damage.bad_lines == 0, damage.examples
    exposed = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    assert counts["metric_series"] == exposed + 3
    con = duckdb.connect()
    [(value, labels, n)] = con.execute(f"""
        SELECT any_value(value), any_value(labels), count(*) FROM '{tmp_path / "t" / "metric_samples.parquet"}'
        JOIN '{tmp_path / "t" / "metric_series.parquet"}' USING (series_id)
        WHERE name = 'ray_finished_jobs_total'""").fetchall()
    assert value == 67.0 and n in (1, 2)  # two scrapes in the same millisecond would be one sample
    assert labels["SessionName"] == SESSION and labels["instance"] == endpoint.address
    assert labels["ray_io_cluster"] == "demo" and labels["job"] == "ray"


def test_series_ids_follow_name_and_labels_so_a_metric_is_contiguous(compacted):
    _, _, con, tables = compacted
    rows = con.execute("SELECT series_id, name, map_entries(labels) FROM s ORDER BY series_id").fetchall()
    keys = [(name, tuple((e["key"], e["value"]) for e in entries)) for _, name, entries in rows]
    assert [sid for sid, _, _ in rows] == list(range(len(rows))) and keys == sorted(keys)
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(tables / "metric_samples.parquet").metadata
    assert all(meta.row_group(i).num_rows <= 122_880 for i in range(meta.num_row_groups))


def test_row_groups_hold_series_ranges(tmp_path):
    """Many samples: row groups cover increasing, disjoint series_id ranges, so DuckDB can skip them."""
    import pyarrow.parquet as pq

    store = LocalStore(tmp_path / "archive")
    text = "".join(
        up(f"{1764100000 + 15 * i}.000")
        + "# HELP m m\n# TYPE m gauge\n"
        + "".join(f'm{{k="{j:04d}",instance="n{node}"}} {i * j}.0 {1764100000 + 15 * i}.000\n' for j in range(500))
        for i in range(150)
        for node in range(2)
    )
    put_file(store, NODES[0], "metrics-000001.prom", text.encode(), [len(text) // 2])
    damage = Damage()
    counts = compact_metrics(store, SessionRef("default", "demo", SESSION), [NODES[0]], tmp_path / "t", damage)
    assert counts["metric_samples"] == 150 * 1001 and not damage.bad_lines
    meta = pq.ParquetFile(tmp_path / "t" / "metric_samples.parquet").metadata
    assert meta.num_row_groups >= 2
    ranges = [
        (meta.row_group(i).column(0).statistics.min, meta.row_group(i).column(0).statistics.max)
        for i in range(meta.num_row_groups)
    ]
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))


@pytest.mark.parametrize("repeat", [False, True])
def test_first_read_wins_and_unique_rows_skip_nothing(tmp_path, repeat):
    """Rows that only arrive out of order are all kept; a repeated (series, ts) keeps its first read value."""
    store = LocalStore(tmp_path / "archive")

    def blk(t: int, v: int) -> bytes:
        return (up(f"{t}.000") + f'# HELP g g\n# TYPE g gauge\ng{{k="a"}} {v} {t}.000\n').encode()

    first = blk(1764100030, 3) + blk(1764100000, 1)  # a step back in time, each timestamp once
    second = blk(1764100030, 99) if repeat else blk(1764100045, 4)
    put_file(store, NODES[0], "metrics-000001.prom", first, [])
    put_file(store, NODES[0], "metrics-000002.prom", second, [])
    counts = compact_metrics(store, SessionRef("default", "demo", SESSION), [NODES[0]], tmp_path / "t", Damage())
    got = (
        duckdb.connect()
        .execute(
            f"SELECT ts_ms, value FROM '{tmp_path / 't' / 'metric_samples.parquet'}' JOIN "
            f"'{tmp_path / 't' / 'metric_series.parquet'}' USING (series_id) WHERE name = 'g' ORDER BY ts_ms"
        )
        .fetchall()
    )
    assert got == [(1764100000000, 1.0), (1764100030000, 3.0)] + ([] if repeat else [(1764100045000, 4.0)])
    assert counts["metric_samples"] == (4 if repeat else 6)
