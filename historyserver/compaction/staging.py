"""An archived file's complete lines, put where DuckDB or a Python fold reads them.

A file is archived as segments, gzip members of its bytes (archive/FORMAT.md "Segments"), generation by generation.
Staging puts back its complete lines: each generation's segments in order; an old generation's last line, cut off
by rotation, stays one (bad) line; the newest generation's last line may still be being written, so it waits for
the next compaction. A segment that cannot be read ends its generation there.

Two ways: `stage_lines` decompresses (into memory or a file), and `stage_members` writes the segments' stored
bytes as they are, one gzip file of several members that DuckDB reads decompressing as it goes, so that the
largest files of a session (its task events: 2.2 GB at a million tasks, 270 MB stored) are not written out again
at full size before DuckDB reads them.
"""

from __future__ import annotations

import gzip
import io
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from archive import logs as archive_logs
from archive.layout import LogSegment, NodeRef
from archive.storage import Store
from historyserver.compaction.export_events import Damage


@dataclass(frozen=True)
class Source:
    """Where a staged file came from: enough to stage it again."""

    node: NodeRef
    segs: list[LogSegment]
    where: str  # how damage names it


PREFETCH = 4  # segments fetched and decompressed ahead, in threads (never all at once: memory)
MEMBER_LEVEL = 1  # the one member staging re-compresses per generation (its last segment, cut to a line)


def stage_lines(
    store: Store, node: NodeRef, segs: list[LogSegment], out: Path | None, damage: Damage, where: str
) -> tuple[bytes | None, int]:
    """The file's complete lines, decompressed: written to `out` segment by segment, so that a large file never
    sits in memory, or returned when `out` is None. Returns (data or None, number of lines)."""
    sink = io.BytesIO() if out is None else _open_staged(out)
    lines, tail = 0, b""  # tail: the bytes after the last newline written so far
    with sink:
        newest = max(s.epoch for s in segs)
        for epoch in sorted({s.epoch for s in segs}):
            run = archive_logs.covering(segs, epoch)
            for chunk in _prefetched(store, node, run, damage, where):
                sink.write(chunk)
                lines += chunk.count(b"\n")
                cut = chunk.rfind(b"\n")
                tail = tail + chunk if cut < 0 else chunk[cut + 1 :]
            if epoch != newest and tail:
                sink.write(b"\n")
                lines, tail = lines + 1, b""
        sink.seek(sink.tell() - len(tail))
        sink.truncate()
        data = sink.getvalue() if out is None else None
    return data, lines


def stage_members(store: Store, node: NodeRef, segs: list[LogSegment], out: Path) -> int | None:
    """The file's complete lines as one gzip file of several members, written to `out`: each segment's stored
    bytes as they are, but the last segment of each generation, decompressed and cut (as stage_lines cuts)
    into a member of its own. Returns the bytes of lines staged (uncompressed), or None where this cannot stage
    the file exactly (one of those segments cannot be read, or the newest's last holds no newline): stage it with
    stage_lines then, which notes the damage.

    Only those last segments are decompressed here: a damaged segment before them is found by whoever reads the
    file (DuckDB raises), and the caller stages the files again with stage_lines."""
    staged = 0
    with _open_staged(out) as sink:
        newest = max(s.epoch for s in segs)
        for epoch in sorted({s.epoch for s in segs}):
            run = archive_logs.covering(segs, epoch)
            if not run:
                continue
            for seg, blob in zip(run[:-1], _ahead(lambda seg: store.get(node.segment_key(seg)), run[:-1])):
                sink.write(blob)
                staged += seg.end - seg.start
            stored = store.get(node.segment_key(run[-1]))
            try:
                last = archive_logs.decode_segment(node, run[-1], stored)
            except archive_logs.CorruptSegment:
                return None
            if not last or last.endswith(b"\n"):
                sink.write(stored)  # whole lines: as stored (re-compressing took most of a 100k-task staging)
            elif epoch == newest and b"\n" not in last and len(run) > 1:
                return None  # the waiting line began in an earlier segment, already written whole
            else:
                # The newest generation's last line waits; an old one's, cut off by rotation, stays one (bad) line.
                last = last[: last.rfind(b"\n") + 1] if epoch == newest else last + b"\n"
                if last:
                    sink.write(gzip.compress(last, compresslevel=MEMBER_LEVEL, mtime=0))
            staged += len(last)
    return staged


def _prefetched(store: Store, node: NodeRef, run: list[LogSegment], damage: Damage, where: str) -> Iterator[bytes]:
    """The run's segments decompressed, in order; a segment that cannot be read ends the run (noted)."""
    try:
        yield from _ahead(lambda seg: archive_logs.read_segment(store, node, seg), run)
    except archive_logs.CorruptSegment as e:
        damage.note(where, str(e))


def _ahead(fetch: Callable[[LogSegment], bytes], run: list[LogSegment]) -> Iterator[bytes]:
    """fetch(segment) of each segment of the run, in order, PREFETCH of them at a time in threads (an object
    store answers each GET after a round trip; all at once would hold the whole file in memory)."""
    with ThreadPoolExecutor(max_workers=PREFETCH) as pool:
        pending = deque(pool.submit(fetch, s) for s in run[:PREFETCH])
        following = iter(run[PREFETCH:])
        try:
            while pending:
                chunk = pending.popleft().result()
                nxt = next(following, None)
                if nxt is not None:
                    pending.append(pool.submit(fetch, nxt))
                yield chunk
        finally:
            for fut in pending:
                fut.cancel()


def _open_staged(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w+b")
