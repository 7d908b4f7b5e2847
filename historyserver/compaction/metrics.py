"""The collector's metric scrapes (source `metrics`, OpenMetrics blocks) folded into two Parquet tables.

- `metric_series`: series_id BIGINT, name VARCHAR, labels MAP(VARCHAR, VARCHAR) (keys sorted). A MAP rather than a
  JSON string because label matchers become plain typed expressions DuckDB evaluates without parsing every row
  (`labels['instance'] = ?`, `regexp_full_match(coalesce(labels['job'], ''), ?)`), and Parquet stores it natively.
- `metric_samples`: series_id BIGINT, ts_ms BIGINT, value DOUBLE, sorted by (series_id, ts_ms), one row per
  series and timestamp (a range shipped twice, or a series written twice, counts once: the first read wins).

Series identity is the sample name plus its sorted labels, as in Prometheus. Files are read one at a time and their
samples staged to disk, so memory holds one spool file and the series dictionary, never the whole session.
The collector's writer lives in collector/sources/metrics.py; this reader is written against the format alone
(the history server never imports the collector).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from prometheus_client.parser import text_string_to_metric_families

from archive import logs as archive_logs
from archive.layout import SessionRef
from archive.storage import Store

log = logging.getLogger("rayhistory.compaction")

SOURCE = "metrics"
BLOCK_START = "# HELP up "  # every scrape block starts with its `up` family (see FORMAT.md's metrics source)
_BATCH_ROWS = 200_000
# `<name>_created` samples are the creation time of their parent, not a series of its own; Prometheus drops them
# when it ingests OpenMetrics, so queries written for Prometheus never see them.
_CREATED_PARENTS = ("counter", "histogram", "summary", "gaugehistogram")

SERIES_SCHEMA = pa.schema([("series_id", pa.int64()), ("name", pa.string()),
                           ("labels", pa.map_(pa.string(), pa.string()))])
SAMPLE_SCHEMA = pa.schema([("series_id", pa.int64()), ("ts_ms", pa.int64()), ("value", pa.float64())])
_STAGE_SCHEMA = SAMPLE_SCHEMA.append(pa.field("seq", pa.int64()))


class _Samples:
    """Staged sample rows, written to a Parquet file in batches (arrival order kept in `seq` for dedup)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer = pq.ParquetWriter(path, _STAGE_SCHEMA, compression="zstd")
        self.cols: tuple[list[int], list[int], list[float]] = ([], [], [])
        self.rows = 0

    def add(self, series_id: int, ts_ms: int, value: float) -> None:
        ids, ts, values = self.cols
        ids.append(series_id)
        ts.append(ts_ms)
        values.append(value)
        if len(ids) >= _BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        ids, ts, values = self.cols
        if ids:
            seq = pa.array(range(self.rows, self.rows + len(ids)), pa.int64())
            self.writer.write_table(pa.Table.from_arrays(
                [pa.array(ids, pa.int64()), pa.array(ts, pa.int64()), pa.array(values, pa.float64()), seq],
                schema=_STAGE_SCHEMA))
            self.rows += len(ids)
        self.cols = ([], [], [])

    def close(self) -> None:
        self.flush()
        self.writer.close()


def compact_metrics(store: Store, ref: SessionRef, node_ids: list[str], out_dir: Path, damage) -> dict[str, int]:
    """Write metric_series.parquet and metric_samples.parquet into out_dir; returns their row counts.

    `damage` is the compaction's Damage: unreadable blocks and segments are noted there, never raised."""
    stage = out_dir / "stage-metrics"
    stage.mkdir(parents=True, exist_ok=True)
    series: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    samples = _Samples(stage / "samples.parquet")
    try:
        for node_id in node_ids:
            node = ref.node(node_id)
            for path, segs in archive_logs.list_segments(store, node, source=SOURCE).items():
                where = f"{node_id[:12]}:{SOURCE}/{path}"
                for epoch in sorted({s.epoch for s in segs}):
                    text = _read_generation(store, node, archive_logs.covering(segs, epoch), damage, where)
                    for n, block in enumerate(_blocks(text), 1):
                        _read_block(block, f"{where} block {n}", series, samples, damage)
        samples.close()
        _write_series(out_dir / "metric_series.parquet", series)
        kept = _write_samples(stage, samples.path, out_dir / "metric_samples.parquet")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if samples.rows > kept:
        log.info("%s: %d duplicate metric sample(s) dropped", ref.id, samples.rows - kept)
    return {"metric_series": len(series), "metric_samples": kept}


def _read_generation(store: Store, node, run, damage, where: str) -> str:
    """One generation's text up to its last complete line (a segment may end mid-line; the file's last line
    lacks `\\n` only after a failed write, and is dropped as the format says). A bad segment ends the run."""
    parts = []
    for seg in run:
        try:
            parts.append(archive_logs.read_segment(store, node, seg))
        except archive_logs.CorruptSegment as e:
            damage.note(where, str(e))
            break
    data = b"".join(parts)
    data = data[: data.rfind(b"\n") + 1]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        damage.note(where, f"not UTF-8 ({e}); undecodable bytes replaced")
        return data.decode("utf-8", errors="replace")


def _blocks(text: str) -> Iterator[str]:
    """The scrape blocks of a file's text (split at each `up` family, as the format says)."""
    start = 0
    while start < len(text):
        nxt = text.find("\n" + BLOCK_START, start)
        end = len(text) if nxt < 0 else nxt + 1
        yield text[start:end]
        start = end


def _read_block(block: str, where: str, series: dict, samples: _Samples, damage) -> None:
    """Parse one block whole before keeping any of it: a block that fails halfway adds nothing.

    prometheus_client's lax text parser, not its strict OpenMetrics one: the strict one refuses a whole scrape
    over a family it finds incomplete (a histogram without its +Inf bucket), where Prometheus keeps every sample.
    The lax parser reads the samples and their names as written; it takes timestamps for milliseconds and divides
    by 1000, so the format's seconds come back multiplied by 1e6 (exact: a double holds 1.7e12 to well under 1 ms).
    """
    rows: list[tuple[str, tuple[tuple[str, str], ...], int, float]] = []
    try:
        if not block.startswith(BLOCK_START):
            raise ValueError("does not start with the `up` family")
        created = {f"{parts[2]}_created" for parts in (line.split(" ", 3) for line in block.splitlines()
                                                       if line.startswith("# TYPE "))
                   if len(parts) == 4 and parts[3] in _CREATED_PARENTS}
        for family in text_string_to_metric_families(block):
            for s in family.samples:
                if s.name in created:
                    continue
                if s.timestamp is None:
                    raise ValueError(f"sample {s.name} has no timestamp")
                rows.append((s.name, tuple(sorted(s.labels.items())), round(s.timestamp * 1e6), float(s.value)))
    except (ValueError, TypeError, KeyError, IndexError) as e:  # the parser's errors for malformed text
        damage.note(where, f"unreadable scrape block ({type(e).__name__}: {str(e)[:200]})")
        return
    for name, labels, ts_ms, value in rows:
        key = (name, labels)
        sid = series.get(key)
        if sid is None:
            sid = series[key] = len(series)
        samples.add(sid, ts_ms, value)


def _write_series(path: Path, series: dict) -> None:
    table = pa.Table.from_arrays([
        pa.array(list(series.values()), pa.int64()),
        pa.array([name for name, _ in series], pa.string()),
        pa.array([list(labels) for _, labels in series], SERIES_SCHEMA.field("labels").type),
    ], schema=SERIES_SCHEMA)
    pq.write_table(table, path, compression="zstd")


def _write_samples(stage: Path, staged: Path, out: Path) -> int:
    """Deduplicate and sort the staged rows in DuckDB, which spills to disk instead of growing memory."""
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET memory_limit = '{os.environ.get('RAYHISTORY_COMPACTION_MEMORY', '600MB')}'")
        con.execute(f"SET temp_directory = '{stage / 'spill'}'")
        src = str(staged).replace("'", "''")
        dst = str(out).replace("'", "''")
        con.execute(f"""
            COPY (
                SELECT series_id, ts_ms, arg_min(value, seq) AS value
                FROM read_parquet('{src}')
                GROUP BY series_id, ts_ms
                ORDER BY series_id, ts_ms
            ) TO '{dst}' (FORMAT parquet, COMPRESSION zstd)""")
        return con.execute(f"SELECT count(*) FROM read_parquet('{dst}')").fetchone()[0]
    finally:
        con.close()


__all__ = ["compact_metrics", "SERIES_SCHEMA", "SAMPLE_SCHEMA"]
