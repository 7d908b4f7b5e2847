"""The log-search tables of a session (archive/compacted.py LOG_LINES, LOG_TERMS), built from its archived logs.

Layout (measured in benchmarks/log_search.py, docs/benchmarks.md):
- log_lines: one row per physical line of every file under logs/ (log_lines.py says what a row holds), sorted by
  (node_id, file, line). Each Parquet row group holds BLOCK_ROWS rows: a row group is a *block*, numbered from 0.
  Row-group min/max of node_id, file and time_ms let a reader skip blocks of other nodes, files and times.
- log_terms: (token, block, lines): the lower-cased tokens (query.tokenize's rule) of each block's messages, with
  the number of the block's lines holding each, sorted by (token, block) so that the min/max of the token column
  lets a lookup read one row group. A query's required tokens (to_sql.required_tokens) give the candidate blocks;
  a single-term query's total is the sum of `lines`, without reading any line.

Bounded memory: files are read segment by segment, one block is buffered, token pairs are written out as blocks
complete, and the final sort of the pairs is DuckDB's within --compaction-memory (it spills to disk).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from archive import logs as archive_logs
from archive.compacted import LOG_LINES, LOG_TERMS
from archive.layout import NodeRef
from archive.storage import Store
from historyserver.compaction.export_events import Damage
from historyserver.compaction.log_lines import SCHEMA, FileLines
from historyserver.search.query import DELIMITERS

log = logging.getLogger("rayhistory.compaction")

BLOCK_ROWS = 16384  # rows of a block (= a Parquet row group of log_lines)
SKIPPED_DIRS = ("events/", "export_events/")  # Ray's structured event files: not log lines (their own tables)
_TO_SPACE = np.arange(256, dtype=np.uint8)
_TO_SPACE[[ord(c) for c in DELIMITERS]] = ord(" ")
_DICTIONARY = ["node_id", "file", "level", "job_id", "worker_id", "component", "task_name", "actor_name", "pid"]
_DELTA = {c: "DELTA_BINARY_PACKED" for c in ("line", "offset", "time_ms", "block")}
_PAIRS = LOG_TERMS.schema  # unsorted pairs are staged in the table's own schema
ZSTD_LEVEL = 6


def searchable(path: str) -> bool:
    return not path.startswith(SKIPPED_DIRS)


def build(
    store: Store, nodes: list[NodeRef], out: Path, tmp: Path, memory_limit: str, damage: Damage | None = None
) -> dict[str, int]:
    """Write out/log_lines.parquet and out/log_terms.parquet; returns their row counts. Unreadable segments are
    noted in `damage` (the file's lines before them stay searchable)."""
    started = time.monotonic()
    tmp.mkdir(parents=True, exist_ok=True)
    pairs_path = tmp / "log_term_pairs.parquet"
    writer = pq.ParquetWriter(
        out / LOG_LINES.file,
        LOG_LINES.schema,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        use_dictionary=_DICTIONARY,
        column_encoding=_DELTA,
        write_statistics=True,
    )
    pairs = pq.ParquetWriter(pairs_path, _PAIRS, compression="zstd", compression_level=1)
    blocks = rows = 0
    pending: list[Future[pa.Table]] = []
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        writer,
        pairs,
    ):  # tokenizing runs beside parsing (Arrow frees the GIL)
        for block in _blocks(_all_lines(store, nodes, damage)):
            block = block.set_column(
                block.schema.get_field_index("block"), "block", pa.array(np.full(block.num_rows, blocks, np.int32))
            )
            writer.write_table(block, row_group_size=BLOCK_ROWS)
            pending.append(pool.submit(block_terms, block.column("message"), blocks))
            blocks, rows = blocks + 1, rows + block.num_rows
            while len(pending) > 2 or (pending and pending[0].done()):
                pairs.write_table(pending.pop(0).result())
        for fut in pending:
            pairs.write_table(fut.result())
    parsed = time.monotonic() - started
    con = duckdb.connect(":memory:", config={"memory_limit": memory_limit, "temp_directory": str(tmp / "spill")})
    try:
        con.execute(
            f"COPY (SELECT token, block, lines FROM read_parquet('{pairs_path}') ORDER BY token, block) "
            f"TO '{out / LOG_TERMS.file}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 65536)"
        )
        terms = con.execute(f"SELECT count(*) FROM read_parquet('{out / LOG_TERMS.file}')").fetchone()
    finally:
        con.close()
        pairs_path.unlink(missing_ok=True)
    log.info(
        "log tables: %d lines in %d blocks in %.1fs (+%.1fs sorting terms)",
        rows,
        blocks,
        parsed,
        time.monotonic() - started - parsed,
    )
    return {LOG_LINES.name: rows, LOG_TERMS.name: int(terms[0]) if terms else 0}


def block_terms(message: pa.ChunkedArray | pa.Array, block: int) -> pa.Table:
    """(token, block, lines): each distinct token of the block's messages and how many lines hold it."""
    if isinstance(message, pa.ChunkedArray):
        message = message.combine_chunks()
    low = pc.utf8_lower(message)
    # Every delimiter byte becomes a space (delimiters are ASCII, so no UTF-8 sequence holds one), then one plain
    # split: several times cheaper than splitting on a regex character class.
    validity, offsets, data = low.buffers()
    spaced = pa.py_buffer(_TO_SPACE[np.frombuffer(data, np.uint8)])
    text = pa.StringArray.from_buffers(len(low), offsets, spaced, validity, low.null_count, low.offset)
    lists = pc.split_pattern(text, " ")
    tokens = pc.list_flatten(lists)
    rows = pc.list_parent_indices(lists)
    keep = pc.not_equal(tokens, "")
    counted = (
        pa.table({"token": tokens.filter(keep), "row": rows.filter(keep)})
        .group_by("token")
        .aggregate([("row", "count_distinct")])
    )
    n = counted.num_rows
    return pa.table(
        {
            "token": counted.column("token"),
            "block": pa.array(np.full(n, block, np.int32)),
            "lines": counted.column("row_count_distinct").cast(pa.int32()),
        },
        schema=_PAIRS,
    )


def _blocks(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """The lines regrouped into blocks of exactly BLOCK_ROWS rows (the last one shorter)."""
    held: list[pa.Table] = []
    count = 0
    for t in tables:
        held.append(t)
        count += t.num_rows
        while count >= BLOCK_ROWS:
            whole = pa.concat_tables(held)
            yield _stored(whole.slice(0, BLOCK_ROWS))
            rest = whole.slice(BLOCK_ROWS)
            held, count = [rest], rest.num_rows
    if count:
        yield _stored(pa.concat_tables(held))


def _stored(t: pa.Table) -> pa.Table:
    """SCHEMA's rows in the stored layout: time as integer milliseconds (delta-encoded), contiguous buffers."""
    ms = pc.round(pc.multiply(t.column("time"), 1000.0)).cast(pa.int64())
    out = t.drop_columns(["time"]).add_column(4, "time_ms", ms).append_column("block", pa.nulls(t.num_rows, pa.int32()))
    return out.select(LOG_LINES.schema.names).cast(LOG_LINES.schema).combine_chunks()


def _all_lines(store: Store, nodes: list[NodeRef], damage: Damage | None) -> Iterator[pa.Table]:
    """Every searchable file's lines, by node then path (the table's order), from the newest generation's gapless
    run of segments (the bytes Ray's log API would serve)."""
    for node in sorted(nodes, key=lambda n: n.node_id):
        for path, segs in archive_logs.list_segments(store, node).items():
            if not searchable(path):
                continue
            lines = FileLines(node.node_id, path)
            where = f"{node.node_id[:12]}:{path}"
            for data in _segments(store, node, archive_logs.covering(segs), damage, where):
                yield from lines.feed(data)
            yield from lines.flush()


def _segments(
    store: Store, node: NodeRef, run: list, damage: Damage | None, where: str, window: int = 3
) -> Iterator[bytes]:
    """The run's segments decompressed in order, a few fetched ahead (never all at once: memory). A segment that
    cannot be read ends the file there (its lines before it stay searchable)."""
    with ThreadPoolExecutor(max_workers=window) as pool:
        ahead = [pool.submit(archive_logs.read_segment, store, node, s) for s in run[:window]]
        following = iter(run[window:])
        while ahead:
            try:
                data = ahead.pop(0).result()
            except archive_logs.CorruptSegment as e:
                if damage is not None:
                    damage.note(where, f"log search stops at an unreadable segment: {e}")
                return
            nxt = next(following, None)
            if nxt is not None:
                ahead.append(pool.submit(archive_logs.read_segment, store, node, nxt))
            yield data


__all__ = ["BLOCK_ROWS", "SCHEMA", "block_terms", "build", "searchable"]
