"""Log segments: how a file's bytes are stored, and how a reader puts a file back together."""

from __future__ import annotations

import gzip
import json
import zlib
from collections import defaultdict
from collections.abc import Iterator

from archive.errors import NotFound
from archive.layout import FORMAT_VERSION, InvalidName, LogSegment, NodeRef, parse_segment_key
from archive.storage.base import Store


def encode(data: bytes) -> bytes:
    # mtime=0 keeps a segment's bytes identical however often it is written: writes stay idempotent.
    # Level 1: several times faster than the default for a few percent more bytes; the collector is a sidecar.
    return gzip.compress(data, compresslevel=1, mtime=0)


def _order(seg: LogSegment) -> tuple[int, int, int]:
    """A file's segments in LogSegment's order (they share path and source), without the dataclass's comparisons."""
    return seg.epoch, seg.start, seg.end


def decode(blob: bytes) -> bytes:
    return gzip.decompress(blob)


def list_segments(
    store: Store, node: NodeRef, path: str | None = None, source: str = "logs"
) -> dict[str, list[LogSegment]]:
    """Segments of every archived file of the node (or of one file), grouped by path, in order."""
    prefix = node.source_prefix(source) + (path.rstrip("/") + "/" if path else "")

    def parsed() -> dict[str, list[LogSegment]]:
        by_path: dict[str, list[LogSegment]] = defaultdict(list)
        for obj in store.list(prefix):
            try:
                seg = parse_segment_key(obj.key, node, source)
            except InvalidName:
                continue
            if path is None or seg.path == path:
                by_path[seg.path].append(seg)
        return {p: sorted(s, key=_order) for p, s in sorted(by_path.items())}

    # A copy: callers may change what they are given, never the store's memo (Store.memo).
    return {p: list(s) for p, s in store.memo(("segments", prefix, path), parsed).items()}


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


def read_renames(store: Store, node: NodeRef) -> dict[str, tuple[str, int]]:
    """Files renamed while archived (x.log rotated to x.log.1): current path -> (archived path, epoch)."""
    try:
        doc = json.loads(store.get(node.files_key))
    except NotFound:
        return {}
    return {path: (target["path"], int(target["epoch"])) for path, target in doc.get("renamed", {}).items()}


def write_renames(store: Store, node: NodeRef, renamed: dict[str, tuple[str, int]]) -> None:
    doc = {
        "format_version": FORMAT_VERSION,
        "renamed": {p: {"path": a, "epoch": e} for p, (a, e) in sorted(renamed.items())},
    }
    store.put(node.files_key, json.dumps(doc, indent=1).encode())


def read_file(store: Store, node: NodeRef, path: str, epoch: int | None = None, source: str = "logs") -> bytes:
    segments = list_segments(store, node, path, source=source).get(path)
    if not segments:
        raise NotFound(store.url, f"no archived {source} file {path} on node {node.node_id}")
    return b"".join(read_segment(store, node, s) for s in covering(segments, epoch))


def read_segment(store: Store, node: NodeRef, seg: LogSegment) -> bytes:
    return decode_segment(node, seg, store.get(node.segment_key(seg)))


def decode_segment(node: NodeRef, seg: LogSegment, blob: bytes) -> bytes:
    """The segment's bytes from its stored object (CorruptSegment if they cannot be had)."""
    try:
        return decode(blob)
    except (OSError, EOFError, zlib.error) as e:
        raise CorruptSegment(f"segment {node.segment_key(seg)} cannot be decompressed: {e}") from e


class CorruptSegment(ValueError):
    pass


def read_range(store: Store, node: NodeRef, path: str, start: int, end: int) -> bytes:
    """Bytes [start, end) of the newest generation, fetching only the segments that overlap the range.

    Stops early at a gap (see covering): the answer is then shorter than end - start.
    """
    segments = list_segments(store, node, path).get(path)
    if not segments:
        raise NotFound(store.url, f"no archived log {path} on node {node.node_id}")
    return b"".join(iter_range(store, node, covering(segments), start, end))


def iter_range(store: Store, node: NodeRef, run: list[LogSegment], start: int, end: int) -> Iterator[bytes]:
    """The pieces of [start, end) held by a gapless run of segments, one piece per segment, in order."""
    for seg in run:
        if seg.end <= start:
            continue
        if seg.start >= end:
            break
        data = read_segment(store, node, seg)
        yield data[max(start - seg.start, 0) : min(end, seg.end) - seg.start]
