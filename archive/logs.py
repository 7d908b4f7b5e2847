"""Log segments: how a file's bytes are stored, and how a reader puts a file back together."""

from __future__ import annotations

import gzip
import zlib
from collections import defaultdict

from archive.errors import NotFound
from archive.layout import InvalidName, LogSegment, NodeRef, parse_segment_key
from archive.storage.base import Store


def encode(data: bytes) -> bytes:
    # mtime=0 keeps a segment's bytes identical however often it is written: writes stay idempotent.
    return gzip.compress(data, compresslevel=6, mtime=0)


def decode(blob: bytes) -> bytes:
    return gzip.decompress(blob)


def list_segments(store: Store, node: NodeRef, path: str | None = None) -> dict[str, list[LogSegment]]:
    """Segments of every archived file of the node (or of one file), grouped by path, in order."""
    prefix = node.logs_prefix + (path.rstrip("/") + "/" if path else "")
    by_path: dict[str, list[LogSegment]] = defaultdict(list)
    for obj in store.list(prefix):
        try:
            seg = parse_segment_key(obj.key, node)
        except InvalidName:
            continue
        if path is None or seg.path == path:
            by_path[seg.path].append(seg)
    return {p: sorted(s) for p, s in sorted(by_path.items())}


def covering(segments: list[LogSegment], epoch: int | None = None) -> list[LogSegment]:
    """The gapless run of segments from offset 0 of one generation (the newest unless given)."""
    if not segments:
        return []
    epoch = max(s.epoch for s in segments) if epoch is None else epoch
    run, pos = [], 0
    for seg in sorted(s for s in segments if s.epoch == epoch):
        if seg.start == pos:
            run.append(seg)
            pos = seg.end
        elif seg.start > pos:
            break  # a gap: later bytes cannot be placed
    return run


def read_file(store: Store, node: NodeRef, path: str, epoch: int | None = None) -> bytes:
    segments = list_segments(store, node, path).get(path)
    if not segments:
        raise NotFound(store.url, f"no archived log {path} on node {node.node_id}")
    return b"".join(read_segment(store, node, s) for s in covering(segments, epoch))


def read_segment(store: Store, node: NodeRef, seg: LogSegment) -> bytes:
    try:
        return decode(store.get(node.segment_key(seg)))
    except (OSError, EOFError, zlib.error) as e:
        raise CorruptSegment(f"segment {node.segment_key(seg)} cannot be decompressed: {e}") from e


class CorruptSegment(ValueError):
    pass
