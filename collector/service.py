"""The collector's lifecycle: identify the node, run the session's topology every interval, heartbeat the manifest,
follow Ray into a new session, and close the session with a final flush on the way out."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

from archive.errors import NotFound, StoreError
from archive.layout import InvalidName, SessionRef
from archive.manifest import ENDED, RUNNING, NodeRecord, SessionManifest, end_marker
from archive.storage import Store
from collector import topology
from collector.errors import FlushIncomplete, InvalidSettings, NodeIdUnknown, NotARaySession, StateDirError
from collector.health import CONTENT_TYPE as HEALTH_CONTENT_TYPE
from collector.health import Health
from collector.settings import CollectorSettings
from collector.sinks.generations import ShipStats
from collector.sources.http_events import HttpEventsSource
from collector.sources.last_written import last_written_ms
from collector.sources.session_dir import SessionDir
from collector.spool import Spool

__all__ = ["Collector", "FlushIncomplete", "InvalidSettings", "NodeIdUnknown"]

log = logging.getLogger("rayhistory.collector")


class Collector:
    def __init__(self, settings: CollectorSettings, store: Store, session: SessionDir) -> None:
        self.settings = settings
        self.store = store
        self.stop_event = threading.Event()
        self.stop_reason = "once" if settings.once else "stopped"
        # On Ray's shared temp volume by default, beside the session directories: it survives a collector restart.
        self.state_dir = (
            Path(settings.state_dir) if settings.state_dir else session.path.parent / "rayhistory-collector"
        )
        self.health = Health(stale_after=3 * settings.interval + 60)
        self.events_spool: Spool | None = None
        self.http: HttpEventsSource | None = None
        self._attach(session)

    def _attach(self, session: SessionDir) -> None:
        """Follow one session: everything per session is reset here (a restarted Ray starts a new session)."""
        self.session = session
        self.ref = SessionRef(self.settings.namespace, self.settings.cluster, session.name)
        self.state = topology.SessionState.of(self.state_dir, self.settings, session)
        self.node: NodeRecord | None = None
        self.topology: topology.Topology | None = None
        self._announced = False
        self._manifest_written = 0.0
        self._other_nodes: dict[str, NodeRecord] = {}  # other nodes' records, as last read from the archive

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
        counts = self.http.stats.snapshot if self.http is not None else None
        self.topology = topology.build(
            self.settings,
            self.store,
            self.ref,
            self.session,
            self.node,
            self.state,
            self.events_spool,
            counts,
            self._shipped,
        )
        for sink in self.topology.sinks:
            self._retrying("reading what the archive holds", sink.open)
        self._announced = False  # node.json and the manifest: written by the first cycle that reaches the archive
        self.topology.start()
        self.topology.register(self.health.components)  # a new session's components replace the old ones
        log.info(
            "collecting %s (node %s%s) into %s as session %s",
            self.session.path,
            self.node.node_id[:12],
            ", head" if self.node.is_head else "",
            self.store.url,
            self.ref.id,
        )

    def _retrying(self, what: str, action) -> None:
        """At start, an archive that stops answering is waited for (with backoff), not fatal: Ray goes on meanwhile."""
        delay = 1.0
        while True:
            try:
                return action()
            except StoreError as e:
                if self.stop_event.is_set():
                    raise
                log.warning("%s failed, retrying in %.0fs: %s", what, delay, e)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 30.0)

    def _announce(self) -> None:
        assert self.node is not None
        self.store.put(self.ref.node(self.node.node_id).node_key, self.node.to_json())
        if self.node.is_head and not self.settings.once:
            self._write_manifest(RUNNING)
        self._announced = True

    def _shipped(self, source: str, stats: ShipStats) -> None:
        self.health.shipped(source, "archive", stats.segments, stats.bytes)

    # --- run -----------------------------------------------------------------------------------------
    def ship_once(self, final: bool = False) -> int:
        """One cycle of the topology; returns how many files had something pending. Raises StoreError."""
        assert self.topology is not None
        return self.topology.cycle(final)

    def run(self) -> None:
        """Ship every interval until stopped, then flush the rest and mark the node (and session) ended.

        When the given session directory is Ray's `session_latest` link and Ray restarts (a new session), the old
        session is finished ("session-replaced") and the new one followed: both are archived, kept apart."""
        if self.settings.http_port and not self.settings.once:
            self._start_http()
        try:
            self._run()
        finally:
            if self.http is not None:
                self.http.stop()

    def _start_http(self) -> None:
        """Ray's HTTP event export lands in a spool (acknowledged only once on disk); /metrics and /healthz."""
        try:
            self.events_spool = Spool(self.state_dir / "ray_events", max_total_bytes=self.settings.spool_max_bytes)
        except OSError as e:
            raise StateDirError(
                f"cannot open the events spool in {self.state_dir}: {e}; give --state-dir a writable directory"
            ) from e
        self.http = HttpEventsSource(self.events_spool, host=self.settings.http_host, port=self.settings.http_port)
        self.http.get_routes["/metrics"] = lambda: (200, HEALTH_CONTENT_TYPE, self._metrics())
        self.http.get_routes["/healthz"] = self._healthz
        try:
            self.http.start()
        except OSError as e:
            self.http = None
            raise InvalidSettings(
                f"cannot serve on {self.settings.http_host}:{self.settings.http_port} (--http-host, --http-port): {e}"
            ) from e

    def _metrics(self) -> bytes:
        if self.events_spool is not None:
            self.health.spool_bytes.set(self.events_spool.size)
        return self.health.metrics()

    def _healthz(self) -> tuple[int, str, bytes]:
        ok, message = self.health.healthz()
        return (200 if ok else 503), "text/plain; charset=utf-8", message.encode() + b"\n"

    def _run(self) -> None:
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

    def _cycle(self, final: bool = False) -> int | None:
        """One cycle; the number of files that had something pending, or None when the archive failed it."""
        try:
            if not self._announced:
                self._announce()
            if (
                self.node
                and self.node.is_head
                and not final
                and not self.settings.once
                and time.monotonic() - self._manifest_written >= self.settings.heartbeat
            ):
                self._write_manifest(RUNNING)
            pending = self.ship_once(final)
        except StoreError as e:
            log.warning("upload failed, will retry: %s", e)
            self.health.failed("archive")
            return None
        self.health.succeeded("archive")
        return pending

    def finish(self) -> None:
        """Last flush, bounded by the deadline; marks the end only once everything is stored."""
        assert self.node is not None and self.topology is not None
        deadline = time.monotonic() + self.settings.final_flush_deadline
        settle_until = time.monotonic() + (0 if self.settings.once else 2.0)
        self.topology.stop_sources()
        while True:
            # Done when a cycle that succeeded found nothing pending in a fresh listing of every source.
            pending = self._cycle(final=True)
            if pending == 0 and time.monotonic() >= settle_until:
                break
            if time.monotonic() > deadline:
                raise FlushIncomplete(
                    f"final upload to {self.store.url} did not finish within {self.settings.final_flush_deadline:.0f}s; "
                    "nothing was marked ended, and a restarted collector resumes where this one stopped"
                )
            if not pending:  # a cycle that shipped something is followed at once by one that looks again
                time.sleep(0.5)
        for sink in self.topology.sinks:
            if not sink.close(max(1.0, deadline - time.monotonic())):
                log.warning(
                    "%s did not acknowledge everything before the deadline; its checkpoint resumes there", sink.name
                )
        end_ms = self._end_ms()
        self.node.end_ms = end_ms
        node = self.ref.node(self.node.node_id)
        self.store.put(node.node_key, self.node.to_json())
        self.store.put(node.ended_key, end_marker(end_ms, self.stop_reason))
        if self.node.is_head:
            self._write_manifest(ENDED, end_ms)
            self.store.put(self.ref.ended_key, end_marker(end_ms, self.stop_reason))
        log.info("session %s archived; node marked ended (%s)", self.ref.id, self.stop_reason)

    def _end_ms(self) -> int:
        """When the session ended on this node (FORMAT.md, `end_ms`). A collector that ran beside Ray saw it stop:
        its clock now, after the final flush, is no earlier than anything it archived. With --once the session may
        have stopped days ago: its end is the newest time Ray wrote in its files."""
        if not self.settings.once:
            return int(time.time() * 1000)
        start_ms = self.session.start_ms
        written = last_written_ms(self.session.logs)
        if written is None:
            log.warning("no time stamp in %s; the session's end is taken as its start", self.session.logs)
            return start_ms
        return max(written, start_ms)

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
            nodes=[self.node, *self._registered_nodes(final=status == ENDED)],
            last_seen_ms=int(time.time() * 1000),
        )
        body = manifest.to_json()
        self.store.put(self.ref.manifest_key, body)
        self.store.put(self.ref.index_key, body)
        self._manifest_written = time.monotonic()

    def _registered_nodes(self, final: bool) -> list[NodeRecord]:
        """Every other node whose collector registered in this session (its folder under nodes/): readers count a
        session's nodes from the manifest alone. A heartbeat reads only new nodes' records; the end reads them all
        again (their collectors record when they ended)."""
        assert self.node is not None
        for node_id in self.store.list_dirs(self.ref.nodes_prefix):
            if node_id == self.node.node_id or (node_id in self._other_nodes and not final):
                continue
            try:
                key = self.ref.node(node_id).node_key
            except InvalidName:
                continue  # not a node's folder
            try:
                self._other_nodes[node_id] = NodeRecord.from_json(self.store.get(key))
            except NotFound:  # its first upload is under way: node.json comes first, but a listing may race it
                self._other_nodes[node_id] = NodeRecord(node_id=node_id)
            except (ValueError, TypeError) as e:
                log.warning("node record of %s is unreadable (%s); counting the node without it", node_id, e)
                self._other_nodes[node_id] = NodeRecord(node_id=node_id)
        return [self._other_nodes[n] for n in sorted(self._other_nodes)]

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: object) -> None:
            self.stop_reason = f"signal:{signal.Signals(signum).name}"
            self.stop_event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
