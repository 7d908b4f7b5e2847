"""Ships log bytes to the archive as immutable, idempotently named segments.

The archive is the checkpoint: a restarted writer lists what the node already has there and resumes
at the end of it, so it neither duplicates nor overwrites (a segment's name is its byte range).
"""

from __future__ import annotations

import fnmatch
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from archive import logs as segments
from archive.layout import LogSegment, NodeRef
from archive.storage import Store
from collector.sources.session_dir import LogFile

log = logging.getLogger("rayhistory.collector")

# Files Ray rewrites in place (periodic state dumps) rather than appends to: each change is a whole new
# generation, shipped at most once per snapshot interval and at the final flush.
SNAPSHOT_PATTERNS = ("debug_state*.txt", "*/debug_state*.txt")


@dataclass
class FileState:
    epoch: int
    offset: int
    inode: int | None  # None after a resume from the archive: not known yet
    mtime_ns: int | None = None
    shipped_at: float = 0.0


@dataclass
class ShipStats:
    files: int = 0
    segments: int = 0
    bytes: int = 0

    def add(self, other: "ShipStats") -> None:
        self.files += other.files
        self.segments += other.segments
        self.bytes += other.bytes


class ArchiveSink:
    def __init__(self, store: Store, node: NodeRef, logs_dir: Path, max_segment_bytes: int = 16 << 20,
                 snapshot_interval: float = 300.0) -> None:
        self.store = store
        self.node = node
        self.logs_dir = logs_dir
        self.max_segment_bytes = max_segment_bytes
        self.snapshot_interval = snapshot_interval
        self.files: dict[str, FileState] = {}

    @staticmethod
    def is_snapshot(path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, p) for p in SNAPSHOT_PATTERNS)

    def resume(self) -> None:
        """Learn from the archive how far each file was already shipped."""
        for path, segs in segments.list_segments(self.store, self.node).items():
            epoch = max(s.epoch for s in segs)
            run = segments.covering(segs, epoch)
            self.files[path] = FileState(epoch, run[-1].end if run else 0, None)

    def pending(self, f: LogFile, final: bool = False) -> bool:
        st = self.files.get(f.path)
        if st is None:
            return f.size > 0
        if self.is_snapshot(f.path):
            changed = f.size != st.offset or f.mtime_ns != st.mtime_ns
            return changed and f.size > 0 and (final or time.monotonic() - st.shipped_at >= self.snapshot_interval)
        return f.size != st.offset or (st.inode is not None and st.inode != f.inode)

    def ship(self, f: LogFile) -> ShipStats:
        """Upload the bytes of f not yet archived. Raises StoreError; nothing is marked shipped until stored."""
        if self.is_snapshot(f.path):
            return self._ship_snapshot(f)
        stats = ShipStats()
        st = self.files.get(f.path)
        if st is None:
            st = self.files[f.path] = FileState(0, 0, f.inode)
        elif (st.inode is not None and st.inode != f.inode) or f.size < st.offset:
            # A new file under the same name (rotated or recreated) or a truncated one: a new generation.
            log.info("log %s was replaced or truncated; archiving it as generation %d", f.path, st.epoch + 1)
            st.epoch, st.offset = st.epoch + 1, 0
        st.inode = f.inode
        if f.size <= st.offset:
            return stats
        try:
            handle = open(self.logs_dir / f.path, "rb")
        except FileNotFoundError:
            return stats  # deleted since the scan; what was shipped stays shipped
        with handle:
            handle.seek(st.offset)
            while st.offset < f.size:
                data = handle.read(min(self.max_segment_bytes, f.size - st.offset))
                if not data:
                    break  # shrank since the scan; the next scan notices
                seg = LogSegment(f.path, st.epoch, st.offset, st.offset + len(data))
                self.store.put(self.node.segment_key(seg), segments.encode(data))
                st.offset = seg.end
                stats.segments += 1
                stats.bytes += len(data)
        stats.files = 1 if stats.segments else 0
        return stats

    def _ship_snapshot(self, f: LogFile) -> ShipStats:
        st = self.files.get(f.path)
        try:
            data = (self.logs_dir / f.path).read_bytes()
        except FileNotFoundError:
            return ShipStats()
        if not data:
            return ShipStats()
        epoch = 0 if st is None else st.epoch + (1 if st.offset else 0)
        self.store.put(self.node.segment_key(LogSegment(f.path, epoch, 0, len(data))), segments.encode(data))
        self.files[f.path] = FileState(epoch, len(data), f.inode, f.mtime_ns, time.monotonic())
        return ShipStats(1, 1, len(data))
