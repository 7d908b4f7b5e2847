"""One folder's files in the archive, as immutable, idempotently named segments (the archive sink keeps one of
these per source).

A file's bytes are archived as generations: the file under the path it had when first seen, with an epoch that
grows when a new file takes that path (rotation, recreation) or the file is truncated. A generation is followed
by its inode, so a file renamed by rotation (x.log -> x.log.1) keeps its archived bytes and is recorded in the
node's files.json instead of being copied again.

The archive is the checkpoint: a restarted writer lists what the node already has and resumes at the end of each
generation, so it neither duplicates nor overwrites (a segment's name is its byte range).
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
from collector.stats import ComponentStats

log = logging.getLogger("rayhistory.collector")

# Files Ray rewrites in place (periodic state dumps) rather than appends to: each change is a whole new
# generation, shipped at most once per snapshot interval and at the final flush.
SNAPSHOT_PATTERNS = ("debug_state*.txt", "*/debug_state*.txt")


@dataclass
class Generation:
    path: str  # the path its bytes are archived under: the one the file had when first seen
    epoch: int
    offset: int  # bytes archived so far
    inode: int | None  # None after a resume from the archive, until a file on disk is matched to it
    mtime_ns: int | None = None
    shipped_at: float = 0.0
    stored: bool = False  # the archive holds a segment of it (for an empty file: its empty segment)


@dataclass
class ShipStats:
    files: int = 0
    segments: int = 0
    bytes: int = 0

    def add(self, other: ShipStats) -> None:
        self.files += other.files
        self.segments += other.segments
        self.bytes += other.bytes


class ArchivedFolder:
    def __init__(
        self,
        store: Store,
        node: NodeRef,
        base_dir: Path,
        source: str = "logs",
        max_segment_bytes: int = 16 << 20,
        snapshot_interval: float = 300.0,
        stats: ComponentStats | None = None,
    ) -> None:
        self.store = store
        self.node = node
        self.base_dir = base_dir
        self.source = source
        self.max_segment_bytes = max_segment_bytes
        self.snapshot_interval = snapshot_interval
        self.counters = stats if stats is not None else ComponentStats()  # shared by the sink's folders
        self.newest: dict[str, Generation] = {}  # per archived path, its newest generation
        self.by_inode: dict[int, Generation] = {}
        self.renamed: dict[str, tuple[str, int]] = {}  # current path -> (archived path, epoch)
        self._renamed_stored: dict[str, tuple[str, int]] = {}
        self._older: dict[tuple[str, int], Generation] = {}  # generations superseded under their path

    @staticmethod
    def is_snapshot(path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, p) for p in SNAPSHOT_PATTERNS)

    def resume(self, inodes: dict[tuple[str, str, int], int] | None = None) -> None:
        """Learn from the archive how far each generation was shipped, and which files were renamed; `inodes`
        (from the local checkpoint) says which file on disk each generation was."""
        for path, segs in segments.list_segments(self.store, self.node, source=self.source).items():
            for epoch in sorted({s.epoch for s in segs}):
                run = segments.covering(segs, epoch)
                gen = Generation(path, epoch, run[-1].end if run else 0, None, stored=True)
                if path in self.newest:
                    self._older[(path, self.newest[path].epoch)] = self.newest[path]
                self.newest[path] = gen
        if self.source == "logs":
            self.renamed = segments.read_renames(self.store, self.node)
            self._renamed_stored = dict(self.renamed)
        for (source, path, epoch), inode in (inodes or {}).items():
            gen = self._generation(path, epoch) if source == self.source else None
            if gen is not None and gen.inode is None:
                gen.inode = inode
                self.by_inode[inode] = gen

    def inodes(self) -> dict[tuple[str, str, int], int]:
        """What the checkpoint keeps: the file behind each generation still on disk."""
        return {(self.source, g.path, g.epoch): i for i, g in self.by_inode.items()}

    def _generation(self, path: str, epoch: int) -> Generation | None:
        gen = self.newest.get(path)
        return gen if gen is not None and gen.epoch == epoch else self._older.get((path, epoch))

    def _new_generation(self, f: LogFile) -> Generation:
        previous = self.newest.get(f.path)
        if previous is not None:
            self._older[(f.path, previous.epoch)] = previous
        gen = Generation(f.path, previous.epoch + 1 if previous else 0, 0, f.inode)
        self.newest[f.path] = gen
        self.by_inode[f.inode] = gen
        self.renamed.pop(f.path, None)
        return gen

    def generation_for(self, f: LogFile) -> Generation:
        """The generation a file on disk belongs to, following renames; starts a new one where needed."""
        gen = self.by_inode.get(f.inode)
        if gen is None:
            # Not seen in this run: after a resume, the archived generation it continues, if any.
            target = self.renamed.get(f.path)
            candidate = self._generation(*target) if target else self.newest.get(f.path)
            if candidate is not None and candidate.inode is None and f.size >= candidate.offset:
                candidate.inode = f.inode
                self.by_inode[f.inode] = candidate
                return candidate
            if target:
                self.renamed.pop(f.path)
            return self._new_generation(f)
        if f.size < gen.offset:  # truncated in place: what follows is a new generation of this path
            log.info("%s was truncated; archiving it as a new generation", f.path)
            del self.by_inode[f.inode]
            return self._new_generation(f)
        if gen.path != f.path:
            if self.renamed.get(f.path) != (gen.path, gen.epoch):
                log.info("%s was renamed from %s; its archived bytes follow it", f.path, gen.path)
                self.renamed[f.path] = (gen.path, gen.epoch)
        else:
            self.renamed.pop(f.path, None)
        return gen

    @property
    def keeps_empty(self) -> bool:
        """Ray's log listing shows files that exist but are empty (raylet.err, a quiet worker's .out); the other
        sources are the collector's own spools, where an empty file says nothing."""
        return self.source == "logs"

    def pending(self, f: LogFile, final: bool = False) -> bool:
        if self.is_snapshot(f.path):
            gen = self.newest.get(f.path)
            if gen is None:
                return f.size > 0 or self.keeps_empty
            changed = f.size != gen.offset or f.mtime_ns != gen.mtime_ns or f.inode != gen.inode
            return changed and f.size > 0 and (final or time.monotonic() - gen.shipped_at >= self.snapshot_interval)
        gen = self.by_inode.get(f.inode)
        if gen is None:
            return f.size > 0 or self.keeps_empty
        return f.size != gen.offset or (gen.path != f.path and self.renamed.get(f.path) != (gen.path, gen.epoch))

    def ship(self, f: LogFile) -> ShipStats:
        """Upload the bytes of f not yet archived. Raises StoreError; nothing is marked shipped until stored."""
        if self.is_snapshot(f.path):
            return self._ship_snapshot(f)
        stats = ShipStats()
        gen = self.generation_for(f)
        if f.size == 0 and not gen.stored and self.keeps_empty:
            self._counted_put(self.node.segment_key(LogSegment(gen.path, gen.epoch, 0, 0, self.source)), b"")
            gen.stored = True
            return ShipStats(1, 1, 0)
        if f.size <= gen.offset:
            return stats
        try:
            handle = open(self.base_dir / f.path, "rb")
        except FileNotFoundError:
            return stats  # deleted (or renamed again) since the scan: the next scan finds it
        with handle:
            handle.seek(gen.offset)
            while gen.offset < f.size:
                data = handle.read(min(self.max_segment_bytes, f.size - gen.offset))
                if not data:
                    break  # shrank since the scan; the next scan notices
                seg = LogSegment(gen.path, gen.epoch, gen.offset, gen.offset + len(data), self.source)
                self._counted_put(self.node.segment_key(seg), data)
                gen.offset = seg.end
                gen.stored = True
                stats.segments += 1
                stats.bytes += len(data)
        stats.files = 1 if stats.segments else 0
        return stats

    def forget_missing(self, present: set[int]) -> None:
        """Drop inodes no longer on disk, so that a reused inode number is not taken for a renamed file."""
        for inode in [i for i in self.by_inode if i not in present]:
            del self.by_inode[inode]

    def flush_renames(self) -> None:
        """Record renamed files (one small object, rewritten only when a rename happened)."""
        if self.source == "logs" and self.renamed != self._renamed_stored:
            segments.write_renames(self.store, self.node, self.renamed)
            self._renamed_stored = dict(self.renamed)

    def _ship_snapshot(self, f: LogFile) -> ShipStats:
        try:
            data = (self.base_dir / f.path).read_bytes()
        except FileNotFoundError:
            return ShipStats()
        previous = self.newest.get(f.path)
        if not data and (previous is not None or not self.keeps_empty):
            return ShipStats()  # a dump being rewritten: its previous version stands until the next one
        epoch = 0 if previous is None else previous.epoch + (1 if previous.offset else 0)
        self._counted_put(self.node.segment_key(LogSegment(f.path, epoch, 0, len(data), self.source)), data)
        gen = Generation(f.path, epoch, len(data), f.inode, f.mtime_ns, time.monotonic(), stored=True)
        self.newest[f.path] = gen
        self.by_inode[f.inode] = gen
        return ShipStats(1, 1, len(data))

    def _counted_put(self, key: str, data: bytes) -> None:
        self.counters.received += 1
        self.counters.received_bytes += len(data)
        self.store.put(key, segments.encode(data))
        self.counters.sent += 1
        self.counters.sent_bytes += len(data)

    def unarchived_bytes(self, f: LogFile) -> int:
        """Bytes of f the archive does not hold yet (for the sink's lag)."""
        gen = self.by_inode.get(f.inode)
        return f.size if gen is None else max(0, f.size - gen.offset)

    def holds(self, f: LogFile) -> bool:
        gen = self.by_inode.get(f.inode)
        return gen is not None and gen.offset >= f.size
