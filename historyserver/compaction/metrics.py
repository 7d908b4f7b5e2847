"""The collector's metric scrapes (source `metrics`, OpenMetrics blocks) folded into two Parquet tables.

- `metric_series`: series_id BIGINT, name VARCHAR, labels MAP(VARCHAR, VARCHAR) (keys sorted). A MAP rather than a
  JSON string because label matchers become plain typed expressions DuckDB evaluates without parsing every row
  (`labels['instance'] = ?`, `regexp_full_match(coalesce(labels['job'], ''), ?)`), and Parquet stores it natively.
- `metric_samples`: series_id BIGINT, ts_ms BIGINT, value DOUBLE, sorted by (series_id, ts_ms), one row per
  series and timestamp (a range shipped twice, or a series written twice, counts once: the first read wins, and a
  real sample always wins over a staleness marker).
- Staleness markers (value STALE_NAN, bits kept by Parquet) are derived per node and target as a live Prometheus
  writes them (staleness.py): at the first block of a target that lacks a series, and for all series at a failed
  scrape; never after a target's last block.

Series identity is the sample name plus its sorted labels, as in Prometheus. Series ids follow the sorted
(name, labels) order, so one metric's series are neighbours in metric_samples and a selector's samples sit in few
row groups (DuckDB skips the others by their series_id min/max). Files are read one at a time and their samples
staged to disk, so memory holds one file and the series dictionary, never the whole session.

Parsing is column-wise (openmetrics.py) with prometheus_client's lax text parser as the reference: a block the fast
path cannot read exactly as the reference would is read by the reference itself (`_read_block`). The collector's
writer lives in collector/sources/metrics.py; both take the format's constants from archive/metrics_blocks.py (the
history server never imports the collector).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prometheus_client.parser import text_string_to_metric_families

from archive import logs as archive_logs
from archive.compacted import METRIC_SAMPLES, METRIC_SERIES
from archive.layout import SessionRef
from archive.metrics_blocks import BLOCK_START, SOURCE
from archive.storage import Store
from historyserver.compaction.openmetrics import CREATED_PARENTS, SeriesTable, parse_file
from historyserver.compaction.staleness import Staleness, with_markers

log = logging.getLogger("rayhistory.compaction")

ROW_GROUP_ROWS = 122_880  # DuckDB's own row group size: a 50-series select reads a few of them, not the file

# Staged rows carry the temporary series id (order of first appearance) and their arrival order for dedup.
_STAGE_SCHEMA = pa.schema([("tmp_id", pa.int64()), ("ts_ms", pa.int64()), ("value", pa.float64()), ("seq", pa.int64())])


class _Samples:
    """Staged sample rows, written to a Parquet file one file's worth at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # lz4 without dictionaries or statistics: the file is read once, by DuckDB, right after.
        self.writer = pq.ParquetWriter(
            path, _STAGE_SCHEMA, compression="lz4", use_dictionary=False, write_statistics=False
        )
        self.rows = 0
        self.used = np.zeros(0, np.bool_)  # by temporary id: has a kept sample (a series is only what has samples)
        # While every series' timestamps strictly increase in arrival order, no (series, ts) repeats and the final
        # step only sorts; a repeat or a step back (a range shipped twice) makes it deduplicate too.
        self.last_ts = np.zeros(0, np.int64)
        self.monotonic = True

    def add(self, tmp_ids: np.ndarray, ts_ms: np.ndarray, values: np.ndarray, seq: np.ndarray) -> None:
        if len(tmp_ids):
            self.writer.write_table(
                pa.Table.from_arrays(
                    [
                        pa.array(tmp_ids, pa.int64()),
                        pa.array(ts_ms, pa.int64()),
                        pa.array(values, pa.float64()),
                        pa.array(seq, pa.int64()),
                    ],
                    schema=_STAGE_SCHEMA,
                ),
                row_group_size=1 << 20,
            )
            self.rows += len(tmp_ids)
            top = int(tmp_ids.max()) + 1
            if top > len(self.used):
                grow = max(top - len(self.used), 1024)
                self.used = np.concatenate([self.used, np.zeros(grow, np.bool_)])
                self.last_ts = np.concatenate([self.last_ts, np.full(grow, np.iinfo(np.int64).min)])
            self.used[tmp_ids] = True
            if self.monotonic:
                self._check_order(tmp_ids, ts_ms)

    def _check_order(self, tmp_ids: np.ndarray, ts_ms: np.ndarray) -> None:
        by_series = np.argsort(tmp_ids, kind="stable")  # arrival order kept within each series
        ids, ts = tmp_ids[by_series], ts_ms[by_series]
        same = ids[1:] == ids[:-1]
        first = np.concatenate([[True], ~same])
        last = np.concatenate([~same, [True]])
        if np.any(same & (ts[1:] <= ts[:-1])) or np.any(ts[first] <= self.last_ts[ids[first]]):
            self.monotonic = False
        self.last_ts[ids[last]] = ts[last]

    def close(self) -> None:
        self.writer.close()


def compact_metrics(
    store: Store, ref: SessionRef, node_ids: list[str], out_dir: Path, damage, memory_limit: str = "600MB"
) -> dict[str, int]:
    """Write the metric_series and metric_samples tables into out_dir; returns their row counts.

    `damage` is the compaction's Damage: unreadable blocks and segments are noted there, never raised."""
    stage = out_dir / "stage-metrics"
    stage.mkdir(parents=True, exist_ok=True)
    table = SeriesTable()
    samples = _Samples(stage / "samples.parquet")
    stale = Staleness(table)
    seq = 0
    try:
        for node_id in node_ids:
            node = ref.node(node_id)
            stale.next_node()  # a target's blocks are followed within one node's files only
            for path, segs in archive_logs.list_segments(store, node, source=SOURCE).items():
                where = f"{node_id[:12]}:{SOURCE}/{path}"
                for epoch in sorted({s.epoch for s in segs}):
                    data = _read_generation(store, node, archive_logs.covering(segs, epoch), damage, where)
                    seq = _read_file(data, where, table, samples, damage, seq, stale)
        samples.close()
        order = _write_series(out_dir / METRIC_SERIES.file, table, samples.used)
        kept = _write_samples(
            stage, samples.path, order, out_dir / METRIC_SAMPLES.file, memory_limit, samples.monotonic
        )
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if samples.rows > kept:
        log.info("%s: %d duplicate metric sample(s) dropped", ref.id, samples.rows - kept)
    return {"metric_series": int(samples.used.sum()), "metric_samples": kept}


def _read_generation(store: Store, node, run, damage, where: str) -> bytes:
    """One generation's bytes up to its last complete line (a segment may end mid-line; the file's last line
    lacks `\\n` only after a failed write, and is dropped as the format says), valid UTF-8. A bad segment ends
    the run."""
    parts = []
    for seg in run:
        try:
            parts.append(archive_logs.read_segment(store, node, seg))
        except archive_logs.CorruptSegment as e:
            damage.note(where, str(e))
            break
    data = b"".join(parts)
    data = data[: data.rfind(b"\n") + 1]
    if data.isascii():
        return data
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError as e:
        damage.note(where, f"not UTF-8 ({e}); undecodable bytes replaced")
        return data.decode("utf-8", errors="replace").encode("utf-8")


def _read_file(
    data: bytes, where: str, table: SeriesTable, samples: _Samples, damage, seq: int, stale: Staleness | None = None
) -> int:
    """Stage one file's samples, and the staleness markers they imply when given the node's `stale` state
    (arrival order = line order, numbered from `seq`); returns the next `seq`."""
    parsed = parse_file(data, table)
    if not len(parsed.slow_blocks):
        ids, ts, values, line_no = parsed.series_ids, parsed.ts_ms, parsed.values, parsed.line_no
    else:
        # Blocks the fast path left over, read by the reference parser; a sample's `seq` is its block's first line
        # plus its rank there, below the next block's first line, so line order is kept across both paths.
        parts = [(parsed.series_ids, parsed.ts_ms, parsed.values, parsed.line_no)]
        bounds = np.append(parsed.block_bytes, len(data))
        for b in parsed.slow_blocks.tolist():
            block = data[bounds[b] : bounds[b + 1]].decode("utf-8")
            rows = _read_block(block, f"{where} block {b + 1}", damage)
            if rows:
                ids = np.array([table.id_for((name, labels)) for name, labels, _, _ in rows], np.int64)
                parts.append(
                    (
                        ids,
                        np.array([r[2] for r in rows], np.int64),
                        np.array([r[3] for r in rows], np.float64),
                        parsed.block_lines[b] + np.arange(len(rows), dtype=np.int64),
                    )
                )
        ids, ts, values, line_no = (np.concatenate(cols) for cols in zip(*parts))
        order = np.argsort(line_no, kind="stable")
        ids, ts, values, line_no = ids[order], ts[order], values[order], line_no[order]
    if stale is None:
        samples.add(ids, ts, values, line_no + seq)
    else:
        marks = stale.markers(ids, ts, line_no, parsed.block_lines)
        samples.add(*with_markers(ids, ts, values, line_no + seq, line_no, marks, seq))
    return seq + parsed.lines


def _strip_exemplars(block: str) -> str:
    """Sample lines without their OpenMetrics exemplar (` # {labels} value [ts]` after the sample): the lax
    parser would take the exemplar's last number for the sample's timestamp. Prometheus keeps the sample's own."""
    if " # {" not in block:
        return block
    out = []
    for line in block.split("\n"):
        if line.startswith("#") or " # {" not in line:
            out.append(line)
            continue
        i, quoted, past_labels = 0, False, "{" not in line.split(" ", 1)[0]
        while i < len(line):  # the exemplar starts at the first ` # ` outside the label set
            c = line[i]
            if c == "\\" and quoted:
                i += 2
                continue
            if c == '"':
                quoted = not quoted
            elif not quoted and c == "}":
                past_labels = True
            elif past_labels and not quoted and line.startswith(" # {", i):
                line = line[:i]
                break
            i += 1
        out.append(line)
    return "\n".join(out)


def _read_block(block: str, where: str, damage) -> list[tuple[str, tuple[tuple[str, str], ...], int, float]]:
    """Parse one block whole with the reference parser: a block that fails halfway gives nothing (noted in
    `damage`).

    prometheus_client's lax text parser, not its strict OpenMetrics one: the strict one refuses a whole scrape
    over a family it finds incomplete (a histogram without its +Inf bucket), where Prometheus keeps every sample.
    The lax parser reads the samples and their names as written; it takes timestamps for milliseconds and divides
    by 1000, so the format's seconds come back multiplied by 1e6 (exact: a double holds 1.7e12 to well under 1 ms).
    """
    rows: list[tuple[str, tuple[tuple[str, str], ...], int, float]] = []
    try:
        if not block.startswith(BLOCK_START):
            raise ValueError("does not start with the `up` family")
        created = {
            f"{parts[2]}_created"
            for parts in (line.split(" ", 3) for line in block.splitlines() if line.startswith("# TYPE "))
            if len(parts) == 4 and parts[3] in CREATED_PARENTS
        }
        for family in text_string_to_metric_families(_strip_exemplars(block)):
            for s in family.samples:
                if s.name in created:
                    continue
                if s.timestamp is None:
                    raise ValueError(f"sample {s.name} has no timestamp")
                rows.append((s.name, tuple(sorted(s.labels.items())), round(s.timestamp * 1e6), float(s.value)))
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:  # the parser's errors
        damage.note(where, f"unreadable scrape block ({type(e).__name__}: {str(e)[:200]})")
        return []
    return rows


def _write_series(path: Path, table: SeriesTable, used: np.ndarray) -> np.ndarray:
    """Write the series that have samples, numbered in sorted (name, labels) order; returns tmp id -> series_id
    (-1 for identities parsed but never kept, e.g. `_created` samples or those of a refused block)."""
    keys = table.keys
    ranked = sorted(np.flatnonzero(used).tolist(), key=keys.__getitem__)
    order = np.full(len(keys), -1, np.int64)
    order[np.array(ranked, np.int64)] = np.arange(len(ranked), dtype=np.int64)
    pq.write_table(
        pa.Table.from_arrays(
            [
                pa.array(np.arange(len(ranked), dtype=np.int64)),
                pa.array([keys[i][0] for i in ranked], pa.string()),
                pa.array([list(keys[i][1]) for i in ranked], METRIC_SERIES.schema.field("labels").type),
            ],
            schema=METRIC_SERIES.schema,
        ),
        path,
        compression="zstd",
    )
    return order


def _write_samples(
    stage: Path, staged: Path, order: np.ndarray, out: Path, memory_limit: str, unique: bool = False
) -> int:
    """Renumber, deduplicate (unless the rows are known `unique` per series and timestamp) and sort the staged
    rows in DuckDB, which spills to disk instead of growing memory."""
    con = duckdb.connect(":memory:", config={"memory_limit": memory_limit, "temp_directory": str(stage / "spill")})
    try:
        ids = pa.table({"tmp_id": np.arange(len(order), dtype=np.int64), "series_id": order})
        con.register("series_ids", ids)
        src = str(staged).replace("'", "''")
        dst = str(out).replace("'", "''")
        rows = "s.value" if unique else "arg_min(s.value, s.seq) AS value"
        group = "" if unique else "GROUP BY i.series_id, s.ts_ms"
        con.execute(f"""
            COPY (
                SELECT i.series_id, s.ts_ms, {rows}
                FROM read_parquet('{src}') s JOIN series_ids i USING (tmp_id)
                {group}
                ORDER BY i.series_id, s.ts_ms
            ) TO '{dst}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS})""")
        return con.execute(f"SELECT count(*) FROM read_parquet('{dst}')").fetchone()[0]
    finally:
        con.close()


__all__ = ["compact_metrics"]
