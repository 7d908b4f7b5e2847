"""An archived session replayed into another archive as its collectors would have written it while it ran.

Every archived file (every source, every generation) is cut into `batches` pieces at byte offsets that ignore line
boundaries; batch i writes the i-th piece of every file as one new segment (archive/FORMAT.md: a segment holds
bytes [start, end) of a generation), so that after batch i each file holds its first i/batches of bytes. The node
records and a `running` manifest come first; the end markers and the `ended` manifest after the last batch, the
session's ended.json last, as a collector ending writes them. Sources are read a segment range at a time: memory
stays bounded by the largest piece.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from archive import logs as archive_logs
from archive.errors import NotFound
from archive.layout import LogSegment, NodeRef, SessionRef
from archive.manifest import SessionManifest
from archive.storage import Store

SOURCES = ("logs", "ray_events", "metrics", "api", "grafana")


@dataclass(frozen=True)
class File:
    node: NodeRef
    source: str
    path: str
    epoch: int
    run: tuple[LogSegment, ...]  # the source's gapless run of this generation

    @property
    def size(self) -> int:
        return self.run[-1].end if self.run else 0


class Streamer:
    def __init__(self, src: Store, dst: Store, ref: SessionRef, batches: int) -> None:
        self.src, self.dst, self.ref, self.batches = src, dst, ref, batches
        self.nodes = [ref.node(n) for n in src.list_dirs(ref.nodes_prefix)]
        self.files: list[File] = []
        for node in self.nodes:
            for source in SOURCES:
                for path, segs in archive_logs.list_segments(src, node, source=source).items():
                    for epoch in sorted({s.epoch for s in segs}):
                        run = archive_logs.covering(segs, epoch)
                        self.files.append(File(node, source, path, epoch, tuple(run)))
        self.written = 0  # batches written so far
        self.last: dict[File, LogSegment] = {}  # each file's newest written segment (a restart writes it again)

    def start(self) -> None:
        """What collectors write when they start: node records, renames, a running manifest and index entry."""
        for node in self.nodes:
            for key in (node.node_key, node.files_key):
                self._copy(key)
        self.heartbeat()

    def heartbeat(self) -> None:
        """The head's collector rewrites its manifest while it runs (last_seen_ms: it is alive)."""
        manifest = SessionManifest.from_json(self.src.get(self.ref.manifest_key))
        running = replace(manifest, status="running", end_ms=None, ended_by=None, last_seen_ms=int(time.time() * 1000))
        self.dst.put(self.ref.manifest_key, running.to_json())
        self.dst.put(self.ref.index_key, running.to_json())

    def cut(self, f: File, i: int) -> int:
        return f.size * i // self.batches

    def write_batch(self) -> int:
        """Write the next batch's piece of every file; returns the bytes written."""
        i = self.written + 1
        total = 0
        for f in self.files:
            start, end = self.cut(f, i - 1), self.cut(f, i)
            if f.size == 0:
                if i == 1:  # an empty file is its one empty segment
                    self.dst.put(f.node.segment_key(f.run[0]), self.src.get(f.node.segment_key(f.run[0])))
                continue
            if end <= start:
                if i == 1:  # a file too small for this batch's piece is still listed, as the collector does
                    # (collector/sinks/generations.py keeps an empty file as its empty segment)
                    empty = LogSegment(f.path, f.epoch, 0, 0, f.source)
                    self.dst.put(f.node.segment_key(empty), archive_logs.encode(b""))
                continue
            data = b"".join(archive_logs.iter_range(self.src, f.node, list(f.run), start, end))
            seg = LogSegment(f.path, f.epoch, start, end, f.source)
            self.dst.put(f.node.segment_key(seg), archive_logs.encode(data))
            self.last[f] = seg
            total += len(data)
        self.written = i
        self.heartbeat()
        return total

    def rewrite_last(self) -> int:
        """A collector restarted after its last upload and shipped the same ranges again (same objects)."""
        for f, seg in self.last.items():
            data = b"".join(archive_logs.iter_range(self.src, f.node, list(f.run), seg.start, seg.end))
            self.dst.put(f.node.segment_key(seg), archive_logs.encode(data))
        return len(self.last)

    def end(self) -> None:
        """The collectors' end: node records and end markers, the ended manifest, the session's end marker last."""
        while self.written < self.batches:
            self.write_batch()
        for node in self.nodes:
            for key in (node.node_key, node.ended_key):
                self._copy(key)
        self._copy(self.ref.manifest_key)
        self._copy(self.ref.index_key)
        self._copy(self.ref.ended_key)

    def _copy(self, key: str) -> None:
        try:
            self.dst.put(key, self.src.get(key))
        except NotFound:
            pass
