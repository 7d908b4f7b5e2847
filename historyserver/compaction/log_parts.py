"""A running session's log-search tables, parsed as its logs are archived (issue 16, goal 1), so that its end
parses only what came after the last fold: at a million tasks, building them whole took 9 of the end's 19 s.

A fold with at least PART_BYTES of new log bytes waiting parses them (whole segments, at most BATCH_BYTES) into a
*part*: a log_lines file and its log_terms file (log_tables.write_tables), blocks numbered after the earlier
parts'. Each searchable file's newest generation, the bytes parsed and its parser's state (log_lines.FileLines:
line number, offset, the header and markers in force, an unfinished last line) go to a state file the checkpoint
names, committed with the fold (checkpoint.py), so a restart neither repeats nor skips a line.
At the end, or a running session's refresh, `finish` parses the rest into one more part, every file's unfinished
line flushed, without touching the state: the log tables are the parts, in order. Their lines, numbers and fields
are those of log_tables.build over the same segments (tests/test_incremental_logs.py); only the blocks differ.

A file whose newest generation is not the one parsed (truncated, rotated) or one of whose segments cannot be read
makes the parts unusable (`logs_broken`): the end then builds the log tables whole, as the one-shot build does.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from archive import logs as archive_logs
from archive.layout import LogSegment, NodeRef, SessionRef
from archive.storage import Store
from historyserver.compaction import log_tables
from historyserver.compaction.checkpoint import Checkpoint, LogPart
from historyserver.compaction.log_lines import FileLines

log = logging.getLogger("rayhistory.compaction")

# A fold parses what waits into a part once either is reached: the end's cost is mostly per segment and per file
# (a 100k-task session streamed in 20 batches: 4.6 MB of logs in 5,940 segments of 297 files took 1.7 s whole).
PART_BYTES = 1 << 20  # log bytes (as archived, uncompressed) waiting
PART_SEGMENTS = 500  # segments waiting
BATCH_BYTES = 64 << 20  # at most about this many in one fold's part: a fold's time stays bounded
# A search opens every part (a 100k-task session streamed in 200 batches had 101: its first page took 0.23 s
# against 0.17 s over one file), so above MAX_PARTS the oldest MERGED parts are merged into one.
MAX_PARTS = 32
MERGED = 16


class Broken(Exception):
    """The parts no longer match what the one-shot build would read: the log tables must be built whole."""


@dataclass
class _File:
    node: NodeRef
    path: str
    epoch: int
    end: int  # bytes [0, end) of the generation are in the parts
    new: list[LogSegment]  # the run's segments after end
    parser: dict[str, Any] | None  # FileLines.snapshot() after end; None: not started

    @property
    def key(self) -> str:
        return f"{self.node.node_id}/{self.path}"

    @property
    def waiting(self) -> int:
        return sum(s.end - max(s.start, self.end) for s in self.new)


@dataclass
class _Notes:
    notes: list[tuple[str, str]] = field(default_factory=list)

    def note(self, where: str, error: str, count: int = 1) -> None:
        self.notes.append((where, error))


def append(store: Store, ref: SessionRef, cp: Checkpoint, state_dir: Path, work: Path, memory_limit: str) -> int:
    """Parse the log bytes archived since the last part into a new part in state_dir, if at least PART_BYTES wait;
    cp is updated (the fold commits it). Returns the bytes parsed."""
    if cp.logs_broken:
        return 0
    states = _states(state_dir, cp)
    try:
        files = _pending(store, ref, states)
        if sum(f.waiting for f in files) < PART_BYTES and sum(len(f.new) for f in files) < PART_SEGMENTS:
            return 0
        taken, used = [], 0
        for f in files:
            segs = []
            for seg in f.new:
                if used >= BATCH_BYTES:
                    break
                segs.append(seg)
                used += seg.end - max(seg.start, f.end)
            if segs:
                taken.append((f, segs))
        name = f"log_lines-{cp.seq:06d}.parquet"
        parsers: dict[str, FileLines] = {}
        rows, blocks, term_rows = _write(store, taken, parsers, False, state_dir / name, work, memory_limit, cp)
    except Broken as e:
        give_up(cp, str(e))
        return 0
    for f, segs in taken:
        states[f.key] = {"epoch": f.epoch, "end": segs[-1].end, "parser": parsers[f.key].snapshot()}
    state_name = f"log_state-{cp.seq:06d}.json"
    (state_dir / state_name).write_text(json.dumps(states))
    terms = name.replace("log_lines-", "log_terms-")
    cp.log_parts.append(LogPart(name, terms, rows, term_rows, blocks))
    cp.log_state = state_name
    if len(cp.log_parts) > MAX_PARTS:
        _merge(cp, state_dir, work, memory_limit)
    return used


def _merge(cp: Checkpoint, state_dir: Path, work: Path, memory_limit: str) -> None:
    """The oldest MERGED parts as one: their blocks copied in order, one row group each (so block numbers hold),
    and their terms sorted together. The parts they replace are removed at the commit."""
    old, name = cp.log_parts[:MERGED], f"log_lines-{cp.seq:06d}m.parquet"
    lines, terms = state_dir / name, state_dir / name.replace("log_lines-", "log_terms-")
    with log_tables.lines_writer(lines) as writer:
        for part in old:
            f = pq.ParquetFile(state_dir / part.lines)
            for g in range(f.num_row_groups):
                block = f.read_row_group(g)
                writer.write_table(block, row_group_size=block.num_rows)
    tmp = work / "log_merge"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        term_rows = log_tables.sort_terms([state_dir / p.terms for p in old], terms, tmp, memory_limit)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    merged = LogPart(name, terms.name, sum(p.rows for p in old), term_rows, sum(p.blocks for p in old))
    cp.log_parts = [merged, *cp.log_parts[MERGED:]]


def finish(
    store: Store, ref: SessionRef, cp: Checkpoint, state_dir: Path, out: Path, tmp: Path, memory_limit: str
) -> tuple[list[tuple[Path, Path]], dict[str, int]] | None:
    """The log tables' parts: the folds' (in state_dir) and one more in out, of everything after them, every file
    flushed. None when there are none to build on (no part yet, or broken): the caller builds the tables whole."""
    if cp.logs_broken or not cp.log_parts:
        return None
    try:
        files = _pending(store, ref, _states(state_dir, cp))
        taken = [(f, f.new) for f in files if f.new or f.parser is not None]
        last = (out / "log_lines.last.parquet", out / "log_terms.last.parquet")
        rows, _, term_rows = _write(store, taken, {}, True, last[0], tmp, memory_limit, cp)
    except Broken as e:
        log.warning("%s: building the log tables whole: %s", ref.id, e)
        return None
    parts = [(state_dir / p.lines, state_dir / p.terms) for p in cp.log_parts] + [last]
    counts = {"log_lines": sum(p.rows for p in cp.log_parts) + rows}
    counts["log_terms"] = sum(p.term_rows for p in cp.log_parts) + term_rows
    return parts, counts


def give_up(cp: Checkpoint, why: str) -> None:
    """Stop folding logs: the parts are dropped (the commit removes their files) and the end builds them whole."""
    log.info("log parts given up: %s", why)
    cp.logs_broken, cp.log_parts, cp.log_state = why, [], None


def _states(state_dir: Path, cp: Checkpoint) -> dict[str, dict[str, Any]]:
    if cp.log_state is None:
        return {}
    states: dict[str, dict[str, Any]] = json.loads((state_dir / cp.log_state).read_text())
    return states


def _pending(store: Store, ref: SessionRef, states: dict[str, dict[str, Any]]) -> list[_File]:
    """Every searchable file's newest run past what the parts hold, node by node in the one-shot build's order."""
    out: list[_File] = []
    for node_id in sorted(store.list_dirs(ref.nodes_prefix)):
        node = ref.node(node_id)
        for path, segs in archive_logs.list_segments(store, node).items():
            if not log_tables.searchable(path):
                continue
            run = archive_logs.covering(segs)
            if not run:
                continue
            st = states.get(f"{node_id}/{path}")
            end = 0 if st is None else int(st["end"])
            if st is not None and (st["epoch"] != run[0].epoch or run[-1].end < end):
                raise Broken(f"{node_id[:12]}:{path} was replaced (generation {run[0].epoch}) after it was indexed")
            new = [s for s in run if s.end > end and s.end > s.start]
            out.append(_File(node, path, run[0].epoch, end, new, None if st is None else st["parser"]))
    listed = {f.key for f in out}
    gone = [k for k in states if k not in listed]
    if gone:
        raise Broken(f"{gone[0]} was indexed but is no longer archived")
    return out


def _write(
    store: Store,
    taken: list[tuple[_File, list[LogSegment]]],
    parsers: dict[str, FileLines],
    flush: bool,
    lines_path: Path,
    work: Path,
    memory_limit: str,
    cp: Checkpoint,
) -> tuple[int, int, int]:
    tmp = work / "log_part"
    tmp.mkdir(parents=True, exist_ok=True)
    notes = _Notes()
    by_node: dict[str, list[tuple[_File, list[LogSegment]]]] = {}
    for f, segs in taken:
        by_node.setdefault(f.node.node_id, []).append((f, segs))
    first = sum(p.blocks for p in cp.log_parts)
    terms_path = lines_path.with_name(lines_path.name.replace("log_lines", "log_terms"))
    try:
        parts = (log_tables.node_part(_lines(store, files, parsers, flush, notes)) for files in by_node.values())
        written = log_tables.write_tables(parts, lines_path, terms_path, tmp, memory_limit, first)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if notes.notes:
        where, error = notes.notes[0]
        raise Broken(f"{where}: {error}")
    return written


def _lines(
    store: Store, files: list[tuple[_File, list[LogSegment]]], parsers: dict[str, FileLines], flush: bool, notes: Any
) -> Iterator[pa.Table]:
    for f, segs in files:
        parser = (
            FileLines(f.node.node_id, f.path)
            if f.parser is None
            else FileLines.resume(f.node.node_id, f.path, f.parser)
        )
        parsers[f.key] = parser
        where = f"{f.node.node_id[:12]}:{f.path}"
        skip = max(0, f.end - segs[0].start) if segs else 0  # a segment cut elsewhere than the parts were
        for data in log_tables.file_bytes(store, f.node, segs, notes, where):
            yield from parser.feed(data[skip:])
            skip = 0
        if flush:
            yield from parser.flush()


__all__ = ["BATCH_BYTES", "MAX_PARTS", "MERGED", "PART_BYTES", "PART_SEGMENTS", "Broken", "append", "finish", "give_up"]
