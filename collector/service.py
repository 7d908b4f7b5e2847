"""The collector's main loop: scan the session's logs, ship new bytes, and close the session on the way out."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

from archive.errors import StoreError
from archive.layout import SessionRef
from archive.manifest import ENDED, RUNNING, NodeRecord, SessionManifest, end_marker
from archive.storage import Store
from collector import checkpoint
from collector.settings import CollectorSettings
from collector.sinks.archive import ArchiveSink, ShipStats
from collector.sources.session_dir import NotARaySession, SessionDir

log = logging.getLogger("rayhistory.collector")


class NodeIdUnknown(RuntimeError):
    pass


class Collector:
    def __init__(self, settings: CollectorSettings, store: Store, session: SessionDir) -> None:
        self.settings = settings
        self.store = store
        self.stop_event = threading.Event()
        self.stop_reason = "once" if settings.once else "stopped"
        self._attach(session)

    def _attach(self, session: SessionDir) -> None:
        """Follow one session: everything per session is reset here (a restarted Ray starts a new session)."""
        self.session = session
        self.ref = SessionRef(self.settings.namespace, self.settings.cluster, session.name)
        self.node: NodeRecord | None = None
        self.sink: ArchiveSink | None = None
        self._manifest_written = 0.0
        state_dir = Path(self.settings.state_dir) if self.settings.state_dir else \
            session.path.parent / "rayhistory-collector"
        self.checkpoint_path = state_dir / f"{session.name}.{self.settings.namespace}.{self.settings.cluster}.json"
        self._checkpointed: dict = {}

    # --- start ---------------------------------------------------------------------------------------
    def _identify(self, deadline: float) -> NodeRecord:
        """Ray writes its node id a few seconds after the session directory appears: wait for it."""
        while True:
            node_id = self.session.node_id()
            if node_id:
                return NodeRecord(
                    node_id=node_id,
                    is_head=self.session.is_head,
                    ip=self.session.node_ip(),
                    hostname=self.session.hostname(),
                    session_dir=str(self.session.path),
                    ray_version=self.session.ray_version(),
                    start_ms=self.session.start_ms,
                )
            if time.monotonic() > deadline or self.stop_event.wait(0.5):
                raise NodeIdUnknown(
                    f"no Ray node id found in {self.session.path} (no metrics_export_port_<id> file, no raylet.out); "
                    "is Ray running on this node, and is this its session directory?"
                )

    def start(self) -> None:
        self.node = self._identify(time.monotonic() + (5 if self.settings.once else 120))
        self.sink = ArchiveSink(self.store, self.ref.node(self.node.node_id), self.session.logs)
        self.sink.resume(checkpoint.load(self.checkpoint_path))
        self.store.put(self.sink.node.node_key, self.node.to_json())
        if self.node.is_head and not self.settings.once:
            self._write_manifest(RUNNING)
        log.info("collecting %s (node %s%s) into %s as session %s", self.session.path, self.node.node_id[:12],
                 ", head" if self.node.is_head else "", self.store.url, self.ref.id)

    # --- run -----------------------------------------------------------------------------------------
    def ship_once(self, final: bool = False) -> ShipStats:
        assert self.sink is not None
        total = ShipStats()
        files = self.session.scan()
        self.sink.forget_missing({f.inode for f in files})
        for f in files:
            if self.sink.pending(f, final):
                total.add(self.sink.ship(f))
        self.sink.flush_renames()
        inodes = self.sink.inodes()
        if inodes != self._checkpointed:
            checkpoint.save(self.checkpoint_path, inodes)
            self._checkpointed = inodes
        return total

    def run(self) -> None:
        """Ship every interval until stopped, then flush the rest and mark the node (and session) ended.

        When the given session directory is Ray's `session_latest` link and Ray restarts (a new session), the old
        session is finished ("session-replaced") and the new one followed: both are archived, kept apart."""
        self.start()
        while not self.settings.once and not self.stop_event.is_set():
            self._cycle()
            replacement = self._replacement()
            if replacement is not None:
                log.info("Ray started a new session %s; finishing %s", replacement.name, self.session.name)
                self.stop_reason = "session-replaced"
                self.finish()
                self.stop_reason = "stopped"
                self._attach(replacement)
                self.start()
                continue
            self.stop_event.wait(self.settings.interval)
        self.finish()

    def _replacement(self) -> SessionDir | None:
        try:
            current = SessionDir(self.settings.session_dir)
        except NotARaySession:
            return None  # the link points nowhere for a moment while Ray restarts
        return current if current.path != self.session.path else None

    def _cycle(self, final: bool = False) -> bool:
        try:
            if self.node and self.node.is_head and not final and not self.settings.once and \
                    time.monotonic() - self._manifest_written >= self.settings.heartbeat:
                self._write_manifest(RUNNING)
            stats = self.ship_once(final)
        except StoreError as e:
            log.warning("upload failed, will retry: %s", e)
            return False
        if stats.segments:
            log.info("shipped %d new segments from %d files (%.1f KiB)", stats.segments, stats.files, stats.bytes / 1024)
        return True

    def finish(self) -> None:
        """Last flush, bounded by the deadline; marks the end only once everything is stored."""
        deadline = time.monotonic() + self.settings.final_flush_deadline
        settle_until = time.monotonic() + (0 if self.settings.once else 2.0)
        while True:
            ok = self._cycle(final=True)
            if ok and not any(self.sink.pending(f, True) for f in self.session.scan()) and time.monotonic() >= settle_until:
                break
            if time.monotonic() > deadline:
                raise FlushIncomplete(
                    f"final upload to {self.store.url} did not finish within {self.settings.final_flush_deadline:.0f}s; "
                    "nothing was marked ended, and a restarted collector resumes where this one stopped"
                )
            time.sleep(0.5)
        assert self.node is not None and self.sink is not None
        end_ms = int(time.time() * 1000)
        self.node.end_ms = end_ms
        self.store.put(self.sink.node.node_key, self.node.to_json())
        self.store.put(self.sink.node.ended_key, end_marker(end_ms, self.stop_reason))
        if self.node.is_head:
            self._write_manifest(ENDED, end_ms)
            self.store.put(self.ref.ended_key, end_marker(end_ms, self.stop_reason))
        log.info("session %s archived; node marked ended (%s)", self.ref.id, self.stop_reason)

    def _write_manifest(self, status: str, end_ms: int | None = None) -> None:
        assert self.node is not None
        manifest = SessionManifest(
            namespace=self.ref.namespace,
            cluster=self.ref.cluster,
            session_name=self.ref.session,
            ray_version=self.node.ray_version,
            start_ms=self.session.start_ms,
            end_ms=end_ms,
            status=status,
            ended_by=self.stop_reason if status == ENDED else None,
            nodes=[self.node],
            last_seen_ms=int(time.time() * 1000),
        )
        body = manifest.to_json()
        self.store.put(self.ref.manifest_key, body)
        self.store.put(self.ref.index_key, body)
        self._manifest_written = time.monotonic()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: object) -> None:
            self.stop_reason = f"signal:{signal.Signals(signum).name}"
            self.stop_event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


class FlushIncomplete(RuntimeError):
    pass
