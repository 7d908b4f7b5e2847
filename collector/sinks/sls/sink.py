"""The SLS sink's engine: streams Ray's log lines, parsed into records, to an SLS logstore (PutLogs, lz4).

Never holds up the caller: `offer()` only notes how far each file has grown. A reader thread reads the files from
disk, parses them (archive/log_records.py) and puts batches on a bounded queue; a sender thread ships them in order.
When SLS is slow the queue fills and the reader simply waits: the files on disk are the buffer, so nothing is
dropped, and the sink catches up when SLS does. After each acknowledged batch the position per (file,
generation) goes into a checkpoint (checkpoint.py), so a killed collector resumes there: delivery is at least
once, and every item carries `__dedup__` (file id + byte offset) for readers to drop repeats.

One PutLogs request holds one file's records and is routed by a hash key of (node, file), so SLS keeps each
file's order on one shard. Its tags say where the lines come from (cluster, namespace, session, node, file) and
carry `__pack_id__` (archive/sls_schema.py): the file's prefix and a counter per LogGroup, kept in the checkpoint
with the line number, so that SLS's context query returns a hit's neighbours in file order across restarts.
Runs of single-line records are parsed and encoded in one pass (lines.py), everything else goes through
LogLineParser and wire.py; either way the LogGroup is byte-identical to what the SDK's `put_logs` serializes, and
it is sent signed as the SDK signs it (transport.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from archive import sls_schema as schema
from archive.credentials import Credentials, CredentialSource, StaticCredentials
from archive.log_records import LogLineParser, Markers, worker_id_of
from collector.sinks.sls import checkpoint
from collector.sinks.sls.lines import Encoded, LineReader
from collector.sinks.sls.transport import SlsError, make_client
from collector.sinks.sls.wire import Encoder, group_tail

log = logging.getLogger("rayhistory.collector.sls")

SLS_MAX_REQUEST_BYTES = 10 << 20  # per PutLogs (reference section 5)
SLS_MAX_ITEMS = 4096  # logs per LogGroup


@dataclass
class SlsConfig:
    endpoint: str  # e.g. cn-hangzhou.log.aliyuncs.com (https:// allowed)
    project: str
    logstore: str
    access_key_id: str
    access_key_secret: str
    checkpoint_path: str
    credentials: CredentialSource | None = None  # RRSA or keys from the environment; wins over the two above
    proxy: str | None = None  # http://host:port; every request goes through it
    topic: str = "ray"
    source: str | None = None  # __source__; default: the node id
    cluster: str = ""  # tags of every LogGroup (archive/sls_schema.py)
    namespace: str = ""
    session: str = ""
    max_batch_bytes: int = 4 << 20  # raw LogGroup bytes, well under the 10 MB request limit
    max_batch_items: int = SLS_MAX_ITEMS
    max_record_bytes: int = 1 << 20  # longer lines are sent in parts
    shard_bytes_per_second: float = 5 << 20  # SLS's write limit per shard; one file maps to one shard
    queue_bytes: int = 8 << 20  # batches waiting for the sender, by raw size (the files on disk are the buffer)
    read_chunk: int = 1 << 20
    idle_flush_seconds: float = 5.0  # a record awaiting continuation lines is sent after this much quiet
    checkpoint_interval: float = 1.0
    request_timeout: float = 30.0
    backoff_initial: float = 0.2
    backoff_max: float = 30.0


class SizedFile(Protocol):  # collector.sources.session_dir.LogFile fits
    path: str
    size: int
    inode: int


@dataclass
class _Batch:
    path: str
    generation: int
    file_id: str
    logs: bytes  # the LogGroup's Logs entries, serialized
    count: int
    log_bytes: int  # file bytes the records span
    ack_offset: int | None  # end of the last complete record, if any
    markers: dict[str, str]
    ack_line: int  # the number of the line at ack_offset
    pack: int  # this LogGroup's __pack_id__ counter


@dataclass
class _Track:
    generation: int
    inode: int
    reader: LineReader
    read_pos: int
    size: int = 0
    grew_at: float = field(default_factory=time.monotonic)
    acked: int = 0
    acked_markers: dict[str, str] = field(default_factory=dict)
    acked_line: int = 1
    pack: int = 0  # the next LogGroup's __pack_id__ counter
    acked_pack: int = 0  # the counter after the last acknowledged batch (a resend reuses those after it)


@dataclass
class SlsCounters:
    bytes_read: int = 0
    records: int = 0
    lines_sent: int = 0  # items acknowledged by SLS
    bytes_sent: int = 0  # log-file bytes those items span
    requests: int = 0
    retries: int = 0
    errors: int = 0
    throttled: int = 0  # quota answers (403)
    dropped: int = 0  # stays 0: the sink falls behind instead
    lag_bytes: int = 0  # written by Ray, not yet acknowledged


def file_id(node: str, path: str, generation: int) -> str:
    return hashlib.sha1(f"{node}\0{path}\0{generation}".encode()).hexdigest()[:16]


def hash_key(node: str, path: str) -> str:
    """SLS route key: 128-bit hex; one per (node, file) keeps a file on one shard, in order."""
    return hashlib.md5(f"{node}\0{path}".encode()).hexdigest()


class SlsSink:
    def __init__(self, config: SlsConfig, node: str, logs_dir: str | os.PathLike[str], client: Any = None) -> None:
        self.config = config
        self.node = node
        self.logs_dir = Path(logs_dir)
        self.client = client or self._make_client()  # anything with put_log_group (transport.PutLogsClient)
        self._encoder = Encoder()  # its cache of repeated contents serves every file (the reader thread's)
        self.counters = SlsCounters()
        self._tracks: dict[str, _Track] = {}
        self._offers: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._queue: queue.Queue[_Batch | None] = queue.Queue()
        self._queued_bytes = 0
        self._space = threading.Condition(self._lock)
        self._closing = threading.Event()  # final pass: flush every parser
        self._abort = threading.Event()  # give up waiting (deadline passed)
        self._reader_done = threading.Event()
        self._buckets: dict[str, list[float]] = {}  # hash key -> [tokens, last refill]
        self._rate_factor = 1.0
        self._checkpoint = checkpoint.load(self.config.checkpoint_path)
        self._checkpoint_dirty = False
        self._checkpoint_at = 0.0
        self._threads = [
            threading.Thread(target=self._read_loop, name="sls-reader", daemon=True),
            threading.Thread(target=self._send_loop, name="sls-sender", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _make_client(self) -> Any:
        c = self.config
        source = c.credentials or StaticCredentials(Credentials(c.access_key_id, c.access_key_secret))
        return make_client(c.endpoint, source, c.request_timeout, c.proxy)

    # --- the caller's side: never blocks ---------------------------------------------------------------
    def offer(self, files: Iterable[SizedFile]) -> None:
        """Note the current size of each file (e.g. after a scan); the reader thread does the rest."""
        with self._lock:
            for f in files:
                self._offers[f.path] = (f.size, f.inode)
        self._wake.set()

    def stats(self) -> SlsCounters:
        with self._lock:
            self.counters.lag_bytes = sum(max(0, t.size - t.acked) for t in self._tracks.values())
            return SlsCounters(**vars(self.counters))

    def close(self, timeout: float = 20.0) -> bool:
        """Send everything offered so far (held-back records too), within timeout. True when all is acknowledged;
        otherwise the checkpoint says where a restarted sink resumes."""
        deadline = time.monotonic() + timeout
        self._closing.set()
        self._wake.set()
        self._reader_done.wait(max(0.0, deadline - time.monotonic()))
        drained = self._reader_done.is_set()
        if drained:
            self._queue.put(None)
        self._threads[1].join(max(0.0, deadline - time.monotonic()))
        drained = drained and not self._threads[1].is_alive()
        self._abort.set()
        with self._space:
            self._space.notify_all()
        for t in self._threads:
            t.join(5)
        self._write_checkpoint()
        return drained

    # --- reader thread ---------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        while not self._abort.is_set():
            final = self._closing.is_set()
            self._wake.clear()
            with self._lock:
                offers, self._offers = self._offers, {}
            for path, (size, inode) in offers.items():
                self._observe(path, size, inode)
            progressed = False
            for path, track in list(self._tracks.items()):
                if self._abort.is_set():
                    return
                progressed |= self._read_file(path, track, final)
            if final and not progressed:
                self._reader_done.set()
                return
            if not progressed:
                self._wake.wait(0.5)

    def _observe(self, path: str, size: int, inode: int) -> None:
        track = self._tracks.get(path)
        if track is None:
            ck = self._checkpoint.get(path)
            pack = ck.get("pack", 0) if ck else 0
            if ck and ck["inode"] == inode and size >= ck["offset"]:
                gen, offset, markers = ck["generation"], ck["offset"], Markers.from_json(ck.get("markers"))
                line = ck.get("line") or self._count_lines(path, offset)
            else:
                gen, offset, markers, line = (ck["generation"] + 1 if ck else 0), 0, None, 1
            track = self._new_track(path, gen, inode, offset, markers, line, pack)
        elif inode != track.inode or size < track.read_pos:
            log.info("log %s was replaced or truncated; sending it as generation %d", path, track.generation + 1)
            track = self._new_track(path, track.generation + 1, inode, 0, None, 1, track.pack)
        track.size = size

    def _count_lines(self, path: str, offset: int) -> int:
        """The number of the line at `offset`, counted in the file (a checkpoint from before line numbers)."""
        newlines = 0
        try:
            with open(self.logs_dir / path, "rb") as fh:
                while offset > 0:
                    data = fh.read(min(offset, 1 << 20))
                    if not data:
                        break
                    newlines += data.count(b"\n")
                    offset -= len(data)
        except FileNotFoundError:
            pass  # gone: nothing will be read from it
        return newlines + 1

    def _new_track(
        self, path: str, gen: int, inode: int, offset: int, markers: Markers | None, line: int, pack: int
    ) -> _Track:
        parser = LogLineParser(path, self.node, offset, markers, self.config.max_record_bytes, line=line)
        track = _Track(
            gen,
            inode,
            LineReader(parser, self._encoder),
            offset,
            acked=offset,
            acked_markers=parser.markers.to_json(),
            acked_line=line,
            pack=pack,
            acked_pack=pack,
        )
        with self._lock:
            self._tracks[path] = track
        return track

    def _read_file(self, path: str, track: _Track, final: bool) -> bool:
        """Read what is new in one file and queue it as batches; True if anything moved."""
        c = self.config
        parts: list[Encoded] = []
        pending = 0
        moved = False
        prefix = f"{file_id(self.node, path, track.generation)}:"
        if track.read_pos < track.size:
            try:
                with open(self.logs_dir / path, "rb") as fh:
                    fh.seek(track.read_pos)
                    while track.read_pos < track.size and pending < 4 * c.max_batch_items:
                        data = fh.read(min(c.read_chunk, track.size - track.read_pos))
                        if not data:
                            break
                        base = track.read_pos
                        track.read_pos += len(data)
                        self.counters.bytes_read += len(data)
                        moved = True
                        got, resume = track.reader.read(data, base, track.read_pos < track.size, prefix)
                        parts += got
                        pending += sum(p.count for p in got)
                        if resume != track.read_pos:  # bytes handed back: read them again with the next chunk
                            self.counters.bytes_read -= track.read_pos - resume
                            track.read_pos = resume
                            fh.seek(resume)
            except FileNotFoundError:
                track.size = track.read_pos  # gone (rotated away): nothing more to read
        if moved:
            track.grew_at = time.monotonic()
        if track.read_pos >= track.size and (final or time.monotonic() - track.grew_at >= c.idle_flush_seconds):
            flushed = track.reader.flush(prefix)
            if flushed is not None:
                parts.append(flushed)
        for part in parts:
            self.counters.records += part.count
            for batch in self._batches(path, track, part, prefix):
                if not self._enqueue(batch):
                    return moved
        return moved or bool(parts)

    def _batches(self, path: str, track: _Track, part: Encoded, prefix: str) -> Iterable[_Batch]:
        """Split one part into PutLogs batches under the item and byte limits."""
        c = self.config
        entries, ends, complete = part.entries, part.ends, part.complete
        i, n = 0, part.count
        whole = n <= c.max_batch_items and sum(map(len, entries)) <= c.max_batch_bytes  # the usual case: one batch
        while i < n:
            j, size = (n, 0) if whole else (i, 0)
            while j < n and j - i < c.max_batch_items and (j == i or size + len(entries[j]) <= c.max_batch_bytes):
                size += len(entries[j])
                j += 1
            last = j - 1
            if complete is not None:
                while last >= i and not complete[last]:
                    last -= 1
            acked = last >= i
            yield _Batch(
                path,
                track.generation,
                prefix[:-1],
                b"".join(entries[i:j]),
                j - i,
                ends[j - 1] - (ends[i - 1] if i else part.start),
                ends[last] if acked else None,
                part.markers[last] if acked else {},
                part.end_lines[last] if acked else 0,
                track.pack,
            )
            track.pack += 1
            i = j

    def _enqueue(self, batch: _Batch) -> bool:
        """Wait for room in the queue (the sink falls behind; Ray and the caller do not wait)."""
        with self._space:
            while self._queued_bytes > 0 and self._queued_bytes + len(batch.logs) > self.config.queue_bytes:
                if self._abort.is_set():
                    return False
                self._space.wait(0.5)
            self._queued_bytes += len(batch.logs)
        self._queue.put(batch)
        return True

    # --- sender thread ---------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while True:
            try:
                batch = self._queue.get(timeout=self.config.checkpoint_interval)
            except queue.Empty:
                self._maybe_checkpoint()
                if self._abort.is_set():
                    return
                continue
            if batch is None:
                return
            if not self._deliver(batch):
                return  # aborted: the checkpoint has the last acknowledged position
            with self._space:
                self._queued_bytes -= len(batch.logs)
                self._space.notify_all()
            self._maybe_checkpoint()

    def _deliver(self, batch: _Batch) -> bool:
        c = self.config
        key = hash_key(self.node, batch.path)
        body = batch.logs + group_tail(c.topic, c.source or self.node, self._tags(batch))
        delay = c.backoff_initial
        while not self._abort.is_set():
            self._throttle(key, len(batch.logs))
            try:
                self.counters.requests += 1
                self.client.put_log_group(c.project, c.logstore, body, key)
            except SlsError as e:
                self.counters.retries += 1
                if e.is_quota:
                    self.counters.throttled += 1
                    self._rate_factor = max(0.05, self._rate_factor / 2)
                    delay = max(delay, 1.0)
                    log.info("SLS write quota exceeded (%s); slowing down to %.0f%%", e.code, 100 * self._rate_factor)
                else:
                    self.counters.errors += 1
                    log.warning("SLS put failed, retrying in %.1fs: %s", delay, e)
                self._abort.wait(delay)
                delay = min(c.backoff_max, delay * 2)
                continue
            self._rate_factor = min(1.0, self._rate_factor * 1.25)
            self._acknowledge(batch)
            return True
        return False

    def _tags(self, batch: _Batch) -> list[tuple[str, str]]:
        c = self.config
        prefix = schema.pack_prefix(c.session, self.node, batch.path)
        tags = [
            (schema.TAG_PACK_ID, schema.pack_id(prefix, batch.pack)),
            (schema.TAG_CLUSTER, c.cluster),
            (schema.TAG_NAMESPACE, c.namespace),
            (schema.TAG_SESSION, c.session),
            (schema.TAG_NODE_ID, self.node),
            (schema.TAG_FILE, batch.path),
            (schema.TAG_WORKER_ID, worker_id_of(batch.path) or ""),
        ]
        return [(k, v) for k, v in tags if v]

    def _throttle(self, key: str, size: int) -> None:
        """Token bucket per hash key at the shard write limit (scaled down after quota errors)."""
        rate = self.config.shard_bytes_per_second * self._rate_factor
        now = time.monotonic()
        bucket = self._buckets.setdefault(key, [rate, now])
        bucket[0] = min(rate, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if bucket[0] < size and bucket[0] < rate:
            wait = (min(size, rate) - bucket[0]) / rate
            self._abort.wait(wait)
            bucket[0] += wait * rate
            bucket[1] = time.monotonic()
        bucket[0] -= size

    def _acknowledge(self, batch: _Batch) -> None:
        with self._lock:
            self.counters.lines_sent += batch.count
            self.counters.bytes_sent += batch.log_bytes
            track = self._tracks.get(batch.path)
            if batch.ack_offset is None or track is None or track.generation != batch.generation:
                return
            track.acked = batch.ack_offset
            track.acked_markers = batch.markers
            track.acked_line = batch.ack_line
            track.acked_pack = batch.pack + 1
            self._checkpoint_dirty = True

    # --- checkpoint (checkpoint.py) ------------------------------------------------------------------------
    def _maybe_checkpoint(self) -> None:
        if self._checkpoint_dirty and time.monotonic() - self._checkpoint_at >= self.config.checkpoint_interval:
            self._write_checkpoint()

    def _write_checkpoint(self) -> None:
        with self._lock:
            files = dict(self._checkpoint)
            for path, t in self._tracks.items():
                files[path] = {
                    "path": path,
                    "generation": t.generation,
                    "inode": t.inode,
                    "offset": t.acked,
                    "markers": t.acked_markers,
                    "line": t.acked_line,
                    "pack": t.acked_pack,
                }
            self._checkpoint_dirty = False
        checkpoint.save(self.config.checkpoint_path, self.node, self.config.project, self.config.logstore, files)
        self._checkpoint_at = time.monotonic()
