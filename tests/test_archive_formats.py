"""Round trips of the archive's file formats (archive/*.py): what each writer writes, its reader reads back whole.

As prometheus_client proves its parser and writer compatible: one set of types, written then read."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.samples import Sample

from archive import api_snapshots, compacted, grafana, metrics_blocks
from archive.layout import InvalidName, SessionRef, parse_compacted_key

# --- metrics blocks ----------------------------------------------------------------------------------------------


def _families(ts_ms: int) -> list[Metric]:
    stamp = metrics_blocks.timestamp(ts_ms)
    c = Metric("rh_requests", "Requests", "counter")
    c.samples = [
        Sample("rh_requests_total", {"route": "/a", "instance": "h:1"}, 3.0, stamp),
        Sample("rh_requests_total", {"route": 'q"\\\n', "instance": "h:1"}, 1.0, stamp),
    ]
    h = Metric("rh_latency_seconds", "Latency", "histogram")
    h.samples = [
        Sample("rh_latency_seconds_bucket", {"le": "1.0", "instance": "h:1"}, 1.0, stamp),
        Sample("rh_latency_seconds_bucket", {"le": "+Inf", "instance": "h:1"}, 2.0, stamp),
        Sample("rh_latency_seconds_count", {"instance": "h:1"}, 2.0, stamp),
        Sample("rh_latency_seconds_sum", {"instance": "h:1"}, 3.5, stamp),
    ]
    return [c, h]


def _samples(doc: str) -> list[tuple[str, dict, float, float]]:
    return [(s.name, s.labels, s.value, float(s.timestamp)) for f in parse_openmetrics(doc) for s in f.samples]


def test_metrics_blocks_round_trip():
    """Blocks rendered as the collector writes them (a failed scrape among them, a torn last line after them)
    come back one document per scrape, every sample with its labels and millisecond timestamp."""
    target = {"instance": "h:1", "job": "ray", "ray_io_cluster": "c"}
    scrapes = [
        (1_700_000_000_123, 1, _families(1_700_000_000_123)),
        (1_700_000_015_000, 0, []),
        (1_700_000_030_007, 1, _families(1_700_000_030_007)),
    ]
    blocks = [
        metrics_blocks.render(metrics_blocks.scrape_header(target, ts, up, 0.25, 6 * up) + fams)
        for ts, up, fams in scrapes
    ]
    text = b"".join(blocks).decode() + metrics_blocks.BLOCK_START + "torn"  # a write that failed
    docs = list(metrics_blocks.split_scrapes(text))
    assert len(docs) == len(scrapes)
    for doc, block, (ts, up, fams) in zip(docs, blocks, scrapes):
        assert doc == block.decode() + metrics_blocks.EOF and block.startswith(metrics_blocks.BLOCK_START_BYTES)
        got = _samples(doc)
        assert [s[0] for s in got[:3]] == list(metrics_blocks.SCRAPE_FAMILIES)
        assert got[0][2] == up and all(s[3] == ts / 1000 for s in got)
        assert got[3:] == [(s.name, s.labels, s.value, ts / 1000) for f in fams for s in f.samples]


def _generate_latest(metrics: list[Metric]) -> bytes:
    from prometheus_client.openmetrics.exposition import generate_latest

    class Families:
        def collect(self) -> list[Metric]:
            return metrics

    return generate_latest(Families())[: -len(metrics_blocks.EOF)]


@pytest.mark.parametrize(
    "name, label, value, unit, fast",
    [
        ("ray_tasks", "State", 'a "quoted"\\ \n value', "", True),  # escaped values take the fast writer too
        ("ray_tasks", "State", "plain", "seconds", True),
        ("ray:tasks", "State", "v", "", False),  # a colon: prometheus_client escapes the name
        ("ray_tasks", "__reserved", "v", "", False),
        ("ray_tasks", "caf\u00e9", "v", "", False),
        ("2xx", "le", "v", "", False),
    ],
)
def test_metrics_blocks_render_writes_what_prometheus_client_writes(name, label, value, unit, fast):
    """The collector's own writer of a block (it renders every scrape) is byte for byte prometheus_client's:
    names that need escaping are handed to prometheus_client."""
    m = Metric(name, 'help with "quotes" \\ and\nnewline', "counter", unit)
    m.samples = [
        Sample(f"{name}_total", {label: value, "a": "1"}, 3.0, "1700000000.123"),  # type: ignore[arg-type]
        Sample(f"{name}_total", {}, float("inf"), None),
        Sample(f"{name}_created", {label: "x"}, 1e21, 1700000000.5),  # type: ignore[arg-type]
    ]
    metrics = [*metrics_blocks.scrape_header({"instance": "h:1"}, 1_000_123, 1, 0.5, 3), m, *_families(1_000_000)]
    assert metrics_blocks.render(metrics) == _generate_latest(metrics)
    assert (metrics_blocks._render_plain(metrics) is not None) == fast


def test_metrics_blocks_read_by_the_history_servers_fast_path():
    """The compaction's column-wise reader finds the same blocks and samples the format's writer wrote."""
    from historyserver.compaction.openmetrics import SeriesTable, parse_file

    target = {"instance": "h:1", "job": "ray"}
    data = b"".join(
        metrics_blocks.render(metrics_blocks.scrape_header(target, ts, 1, 0.1, 6) + _families(ts))
        for ts in (1_000_000, 1_015_000)
    )
    table = SeriesTable()
    parsed = parse_file(data, table)
    assert len(parsed.block_lines) == 2 and not len(parsed.slow_blocks)
    names = [table.keys[i][0] for i in parsed.series_ids]
    assert names[:3] == list(metrics_blocks.SCRAPE_FAMILIES) and len(names) == 2 * (3 + 6)
    assert np.array_equal(np.unique(parsed.ts_ms), [1_000_000, 1_015_000])


@pytest.mark.parametrize("seq", [1, 42, 999_999])
def test_metrics_file_names_round_trip(seq):
    assert metrics_blocks.parse_file_name(metrics_blocks.file_name(seq)) == seq
    assert metrics_blocks.parse_file_name(metrics_blocks.file_name(seq) + ".tmp") is None


# --- API snapshots -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, body, value",
    [
        (
            200,
            b'{"result": true, "data": {"result": {"result": [{"placement_group_id": "pg1"}]}}}',
            {"result": True, "data": {"result": {"result": [{"placement_group_id": "pg1"}]}}},
        ),
        (200, b"[]", []),
        (501, b"Serve is not installed \xe2\x9c\x97", "Serve is not installed \u2717"),  # not JSON: kept as text
        (500, b"\xff\xfe broken", "\ufffd\ufffd broken"),  # not UTF-8: replaced, as the collector writes it
    ],
)
def test_api_snapshot_lines_round_trip(status, body, value):
    snap = api_snapshots.Snapshot.from_response(1_700_000_000_123, api_snapshots.JOBS_ROUTE, status, body)
    line = snap.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert (
        api_snapshots.decode(line)
        == snap
        == api_snapshots.Snapshot(1_700_000_000_123, api_snapshots.JOBS_ROUTE, status, value)
    )


def test_api_snapshots_latest_by_route():
    """The newest 200 answer of each route holds (a later line wins a tie); lines that are no snapshot are
    reported by number, never raised."""

    def line(at, route, status=200, body=b"{}"):
        return api_snapshots.Snapshot.from_response(at, route, status, body).encode()

    pg, cs1 = api_snapshots.PLACEMENT_GROUPS_ROUTE, api_snapshots.CLUSTER_STATUS_ROUTES[1]
    lines = [
        line(1, pg, body=b'{"n": 1}'),
        b'{"route": "x"}\n',
        line(3, pg, body=b'{"n": 3}'),
        line(4, pg, 500),
        line(3, pg, body=b'{"n": 33}'),
        b"not json\n",
        line(2, cs1),
    ]
    bad: list[tuple[int, str]] = []
    latest = api_snapshots.latest_by_route(lines, lambda n, e: bad.append((n, type(e).__name__)))
    assert latest == {pg: api_snapshots.Snapshot(3, pg, 200, {"n": 33}), cs1: api_snapshots.Snapshot(2, cs1, 200, {})}
    assert bad == [(2, "KeyError"), (6, "JSONDecodeError")]


def test_api_snapshot_routes_and_file_names():
    assert len(set(api_snapshots.ROUTES)) == 5 and all(r.startswith("/api/") for r in api_snapshots.ROUTES)
    assert api_snapshots.CLUSTER_STATUS_ROUTES[1].endswith("format=1")
    assert api_snapshots.parse_file_name(api_snapshots.file_name(7)) == 7
    assert api_snapshots.parse_file_name(metrics_blocks.file_name(7)) is None


# --- Grafana dashboards ------------------------------------------------------------------------------------------


def test_grafana_dashboards_round_trip(tmp_path):
    """Files of the session's SESSION_DIR shipped by the collector's sink come back as dashboards by uid; files
    that are not dashboards are skipped, and a small segment size splits a file without changing it."""
    from archive.storage.local import LocalStore
    from collector.sinks.generations import ArchivedFolder
    from collector.sources.session_dir import scan_tree

    boards = {
        "rayDefaultDashboard": {"uid": "rayDefaultDashboard", "title": "Default \u2713", "panels": [{"id": 1}]},
        "serve": {"uid": "serve", "title": "Serve", "panels": []},
    }
    folder = tmp_path / "session" / grafana.SESSION_DIR
    folder.mkdir(parents=True)
    for name, board in boards.items():
        (folder / f"{name}_grafana_dashboard.json").write_text(json.dumps(board))
    (folder / "README.txt").write_text("not a dashboard")
    (folder / "broken.json").write_text('{"title": "no uid"}')
    store = LocalStore(tmp_path / "archive")
    node = SessionRef("default", "c", "session_2026-01-01_00-00-00_000000_1").node("ab" * 28)
    sink = ArchivedFolder(store, node, folder, source=grafana.SOURCE, max_segment_bytes=20)
    for f in scan_tree(folder):
        sink.ship(f)
    assert grafana.dashboards(store, node) == boards


# --- compacted tables --------------------------------------------------------------------------------------------


def test_compacted_keys_round_trip():
    ref = SessionRef("default", "c", "session_2026-01-01_00-00-00_000000_1")
    for version, name in [(compacted.COMPACTION_VERSION, compacted.INFO_FILE), (3, compacted.JOBS.file)]:
        assert parse_compacted_key(ref.compacted_key(version, name), ref) == (version, name)
    assert parse_compacted_key(ref.manifest_key, ref) is None
    assert parse_compacted_key(ref.compacted_prefix(9) + "sub/x.parquet", ref) is None
    with pytest.raises(InvalidName):
        ref.compacted_key(9, "../x")


def test_compacted_registry():
    assert len(set(compacted.TABLE_NAMES)) == len(compacted.TABLES)
    assert all(compacted.parse_file_name(t.file) is t and compacted.table(t.name) is t for t in compacted.TABLES)
    assert compacted.parse_file_name(compacted.INFO_FILE) is None
    # A table changed in a new version needs the new version: the cache is rebuilt, never migrated.
    assert max(t.version for t in compacted.TABLES) <= compacted.COMPACTION_VERSION
    with pytest.raises(KeyError, match="the tables are tasks, "):
        compacted.table("task")


def test_compaction_writes_every_registered_table_in_its_schema(tmp_path):
    """The builders write exactly the registry's files, in the registry's columns. DuckDB writes the tasks table
    with its own types for two columns (read back as the registry's by every reader)."""
    from archive.storage.local import LocalStore
    from historyserver.compaction import log_tables
    from historyserver.compaction.build import compact

    ref = SessionRef("default", "c", "session_2026-01-01_00-00-00_000000_1")
    info = compact(LocalStore(tmp_path / "archive"), ref, tmp_path / "t", 1_000)
    # Plus the log builder's note of what its tables were built from: local only, publish() sends TABLES and info.
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == sorted(
        [t.file for t in compacted.TABLES] + [compacted.INFO_FILE, log_tables.INPUTS_FILE]
    )
    assert info["compaction_version"] == compacted.COMPACTION_VERSION
    json = "extension<arrow.json>"
    duckdb_types = {
        ("tasks", "attempt_number"): pa.int32(),
        ("tasks", "runtime_env_info"): json,
        ("tasks", "label_selector"): json,
    }
    for t in compacted.TABLES:
        written = pq.read_schema(tmp_path / "t" / t.file)
        assert written.names == t.schema.names, t.name
        for field in t.schema:
            got, duckdb_type = written.field(field.name).type, duckdb_types.get((t.name, field.name))
            assert str(got) == str(duckdb_type) if duckdb_type else got.equals(field.type), (t.name, field.name)


def test_every_registered_table_has_one_builder_in_order():
    from historyserver.compaction import tables

    tables.check()  # as at import
    workers = next(b for b in tables.BUILDERS if compacted.WORKERS in b.tables)
    with pytest.raises(ValueError, match="reads \\['tasks'\\] before they are built"):
        tables.check((workers, *[b for b in tables.BUILDERS if b is not workers]))
    extra = compacted.Table("search_tokens", pa.schema([("token", pa.string())]), compacted.COMPACTION_VERSION + 1)
    with pytest.raises(ValueError, match="register each table in archive/compacted.py once"):
        tables.check(tables.BUILDERS, (*compacted.TABLES, extra))


# --- the drawn layout --------------------------------------------------------------------------------------------


def test_the_drawn_trees_show_every_source_and_prefix():
    """FORMAT.md's tree and layout.py's docstring are what a reader of the archive looks at first."""
    from pathlib import Path

    from archive import layout

    format_md = (Path(layout.__file__).parent / "FORMAT.md").read_text()
    tree = format_md[format_md.index("## Layout") : format_md.index("| part |")]
    for drawn in (tree, layout.__doc__):
        lines = [line.strip() for line in drawn.splitlines()]
        for source in layout.SOURCES:
            assert any(line.startswith(f"{source}/") for line in lines), source
        for prefix in ("index/", "deleting/", layout.COMPACTED_DIR):
            assert any(line.startswith(prefix) for line in lines), prefix
