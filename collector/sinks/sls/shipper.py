"""The engine of the events and metrics sinks: ships the complete lines of growing files, at least once.

`offer()` only notes each file's size (the topology never waits). One thread reads what is new past each file's
acknowledged offset, whole lines only, hands them to the sink's `encode` (which makes requests of them) and
`send`s each request, retrying with exponential backoff (longer after a quota answer) until it is acknowledged or
the sink is closed. Only then does the file's offset move past the request's lines; the offsets go to a
checkpoint (versioned JSON, written atomically) at most every second and at close, so a killed collector resends
at most the unacknowledged tail, which readers drop by each item's dedup key (or which is idempotent, for
samples). A file is tracked by its inode, so a renamed file (Ray rotates export-event files) keeps its place.
`holds()` is true once a file is acknowledged up to its size: a spool releases its files only then.

A request the destination refuses for good (`Refused`, e.g. a remote-write 400) is counted as dropped and
skipped, as Prometheus's own remote write does; every other failure is retried.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archive.atomic import write_atomic
from collector.components import FileState, Listing
from collector.errors import CheckpointError
from collector.stats import ComponentStats

log = logging.getLogger("rayhistory.collector.sls")

CHECKPOINT_VERSION = 1
MAX_LINE_BYTES = 16 << 20  # a longer line is skipped (counted as dropped): no Ray event or sample line is near it


class Retry(Exception):
    """The request failed and is to be sent again (5xx, throttling, an unreachable endpoint)."""

    def __init__(self, message: str, quota: bool = False) -> None:
        super().__init__(message)
        self.quota = quota


class Refused(Exception):
    """The destination refused the request for good; its items are dropped."""


@dataclass
class Track:
    source: str
    path: str
    inode: int
    file_id: str  # stable for the file's life: the prefix of its items' dedup keys
    offset: int = 0  # acknowledged
    size: int = 0


@dataclass
class Request:
    payload: Any
    items: int
    end: int  # the file offset acknowledged with it


@dataclass
class ShipCounters:
    lines: int = 0
    items: int = 0
    items_sent: int = 0
    bytes_read: int = 0
    bytes_sent: int = 0
    requests: int = 0
    retries: int = 0
    errors: int = 0
    throttled: int = 0
    dropped: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)


class FileShipper:
    """Subclasses say which files they take (`wants`), how lines become requests (`encode`) and how a request is
    sent (`send`, raising Retry or Refused)."""

    name = "sls"
    inputs: frozenset[str] | None = None

    def __init__(
        self,
        folders: dict[str, Path],
        checkpoint_path: Path,
        node: str,
        chunk_bytes: int = 1 << 20,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
        checkpoint_interval: float = 0.2,
    ) -> None:
        self.folders = folders
        self.checkpoint_path = Path(checkpoint_path)
        self.node = node
        self.chunk_bytes = chunk_bytes
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.checkpoint_interval = checkpoint_interval
        self.counters = ShipCounters()
        self._tracks: dict[tuple[str, int], Track] = {}
        self._offers: dict[str, Listing] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._abort = threading.Event()
        self._done = threading.Event()
        self._dirty = False
        self._saved_at = 0.0
        self._thread: threading.Thread | None = None

    # --- to override -------------------------------------------------------------------------------------
    def wants(self, source: str, path: str) -> bool:
        return True

    def encode(self, track: Track, lines: list[tuple[int, bytes]], end: int) -> Iterable[Request]:
        """Requests for these lines (each with its start offset; `end` is where the last one ends), in order;
        every request's `end` is the offset acknowledged with it, the last one's must be `end`."""
        raise NotImplementedError

    def send(self, payload: Any) -> None:
        raise NotImplementedError

    # --- the topology's side (collector/components.py Sink) -----------------------------------------------
    def open(self) -> None:
        if self._thread is None:
            for entry in self._load():
                track = Track(**entry)
                self._tracks[(track.source, track.inode)] = track
            self._thread = threading.Thread(target=self._loop, name=f"{self.name}-shipper", daemon=True)
            self._thread.start()

    def offer(self, source: str, listing: Listing, final: bool) -> int:
        with self._lock:
            self._offers[source] = listing
        self._wake.set()
        return 0  # the engine's thread delivers, by close()'s deadline

    def holds(self, source: str, f: FileState) -> bool:
        if not self.wants(source, f.path):
            return True
        track = self._tracks.get((source, f.inode))
        return track is not None and track.offset >= f.size

    def flush(self) -> None:
        pass  # the engine checkpoints after acknowledgements

    def close(self, timeout: float) -> bool:
        """Send what was offered, within timeout; False when something is left (the checkpoint resumes there)."""
        if self._thread is None:
            return True
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout)
        done = self._done.is_set()
        self._abort.set()
        self._thread.join(5)
        self._save()
        return done

    def stats(self) -> ComponentStats:
        c = self.counters
        with self._lock:
            lag = sum(max(0, t.size - t.offset) for t in self._tracks.values())
        return ComponentStats(
            received=c.items,
            received_bytes=c.bytes_read,
            sent=c.items_sent,
            sent_bytes=c.bytes_sent,
            dropped=c.dropped,
            retries=c.retries,
            errors={"request": c.errors, "quota": c.throttled, **c.errors_by_type},
            lag_bytes=lag,
        )

    # --- the thread ----------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._abort.is_set():
            closing = self._closing.is_set()
            self._wake.clear()
            self._take_offers()
            moved = False
            for track in list(self._tracks.values()):
                if self._abort.is_set():
                    return
                moved |= self._ship(track)
            self._maybe_save()
            if closing and not moved:
                self._done.set()
                return
            if not moved:
                self._wake.wait(0.5)

    def _take_offers(self) -> None:
        with self._lock:
            offers, self._offers = self._offers, {}
        for source, listing in offers.items():
            seen = set()
            for f in listing.files:
                if not self.wants(source, f.path):
                    continue
                key = (source, f.inode)
                seen.add(key)
                track = self._tracks.get(key)
                if track is None or f.size < track.offset:  # new, or truncated: a new file from offset 0
                    track = Track(source, f.path, f.inode, self._file_id(source, f.path, f.inode))
                    with self._lock:
                        self._tracks[key] = track
                    self._dirty = True
                track.path, track.size = f.path, f.size
            with self._lock:  # files the source no longer lists (released, deleted) are forgotten
                for key in [k for k in self._tracks if k[0] == source and k not in seen]:
                    del self._tracks[key]
                    self._dirty = True

    def _file_id(self, source: str, path: str, inode: int) -> str:
        return hashlib.sha1(f"{self.node}\0{source}\0{path}\0{inode}\0{time.time_ns()}".encode()).hexdigest()[:16]

    def _ship(self, track: Track) -> bool:
        if track.offset >= track.size:
            return False
        data = self._read(track)
        if data is None:
            return False
        cut = data.rfind(b"\n") + 1
        if not cut:
            if len(data) > MAX_LINE_BYTES:
                skip = len(data)
                log.warning("%s: a line of over %d bytes in %s skipped", self.name, MAX_LINE_BYTES, track.path)
                self.counters.dropped += 1
                self._advance(track, track.offset + skip, 0, skip)
                return True
            return False  # a line still being written
        lines: list[tuple[int, bytes]] = []
        pos = 0
        while pos < cut:
            nl = data.index(b"\n", pos)
            if nl > pos:
                lines.append((track.offset + pos, data[pos:nl]))
            pos = nl + 1
        self.counters.bytes_read += cut
        self.counters.lines += len(lines)
        start = first = track.offset
        for request in self.encode(track, lines, first + cut):
            self.counters.items += request.items
            outcome = self._deliver(request)
            if outcome is None:
                return False  # aborted: the checkpoint has the last acknowledged offset
            self._advance(track, request.end, request.items if outcome else 0, request.end - start)
            start = request.end
        if track.offset < first + cut:  # lines that made no item (comments, event types not sent)
            self._advance(track, first + cut, 0, first + cut - track.offset)
        return True

    def _read(self, track: Track) -> bytes | None:
        path = self.folders[track.source] / track.path
        want = min(self.chunk_bytes, track.size - track.offset)
        try:
            with open(path, "rb") as fh:
                fh.seek(track.offset)
                data = fh.read(want)
                # a line longer than the chunk: read on until its end (bounded)
                while b"\n" not in data and len(data) <= MAX_LINE_BYTES and track.offset + len(data) < track.size:
                    more = fh.read(min(self.chunk_bytes, track.size - track.offset - len(data)))
                    if not more:
                        break
                    data += more
                return data
        except FileNotFoundError:
            track.size = track.offset  # gone (released or rotated away): nothing more to read
            return None

    def _advance(self, track: Track, end: int, items: int, file_bytes: int) -> None:
        with self._lock:
            track.offset = max(track.offset, end)
            self.counters.items_sent += items
            self.counters.bytes_sent += file_bytes
            self._dirty = True

    def _deliver(self, request: Request) -> bool | None:
        """True when acknowledged, False when refused for good (dropped), None when aborted."""
        delay = self.backoff_initial
        while not self._abort.is_set():
            self.counters.requests += 1
            try:
                self.send(request.payload)
                return True
            except Refused as e:
                log.error("%s: the destination refused %d items for good: %s", self.name, request.items, e)
                self.counters.dropped += request.items
                return False
            except Retry as e:
                self.counters.retries += 1
                if e.quota:
                    self.counters.throttled += 1
                    delay = max(delay, 1.0)
                    log.info("%s: write quota exceeded (%s); backing off %.1fs", self.name, e, delay)
                else:
                    self.counters.errors += 1
                    log.warning("%s: send failed, retrying in %.1fs: %s", self.name, delay, e)
                self._abort.wait(delay)
                delay = min(self.backoff_max, delay * 2)
        return None

    # --- checkpoint ------------------------------------------------------------------------------------------
    def _load(self) -> list[dict[str, Any]]:
        path = self.checkpoint_path
        if not path.exists():
            return []
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(
                f"cannot read the {self.name} checkpoint {path}: {e}; delete it to send every file again from "
                "the start (readers drop repeats by their dedup key)"
            ) from e
        if data.get("version") != CHECKPOINT_VERSION or data.get("sink") != self.name:
            raise CheckpointError(
                f"{path} is not a version-{CHECKPOINT_VERSION} checkpoint of the {self.name} sink; delete it to "
                "resend from the start"
            )
        keys = ("source", "path", "inode", "file_id", "offset")
        return [{k: f[k] for k in keys} for f in data["files"]]

    def _maybe_save(self) -> None:
        if self._dirty and time.monotonic() - self._saved_at >= self.checkpoint_interval:
            self._save()

    def _save(self) -> None:
        with self._lock:
            files = [
                {"source": t.source, "path": t.path, "inode": t.inode, "file_id": t.file_id, "offset": t.offset}
                for t in self._tracks.values()
            ]
            self._dirty = False
        body = {"version": CHECKPOINT_VERSION, "sink": self.name, "node": self.node, "files": files}
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.checkpoint_path, json.dumps(body, indent=1).encode())
        self._saved_at = time.monotonic()
