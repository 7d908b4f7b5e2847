"""The archive sink: every source's files, as byte-range segments under the node's prefix (collector.sinks.
generations does one folder), resumed from what the archive holds, with a local checkpoint of which file on disk
each archived generation is (collector.checkpoint), saved at the end of every cycle that stored everything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from archive.errors import StoreError
from archive.layout import NodeRef
from archive.storage import Store
from collector import checkpoint
from collector.components import FileState, Listing
from collector.errors import StateDirError
from collector.sinks.generations import ArchivedFolder, ShipStats
from collector.stats import ComponentStats

log = logging.getLogger("rayhistory.collector")


class ArchiveSink:
    name = "archive"
    inputs = None  # every source

    def __init__(
        self,
        store: Store,
        node: NodeRef,
        folders: dict[str, Path],
        checkpoint_path: Path,
        on_shipped: Callable[[str, ShipStats], None] = lambda source, stats: None,
    ) -> None:
        self.store, self.node = store, node
        self.checkpoint_path = checkpoint_path
        self._counters = ComponentStats(errors={"store": 0})
        self.folders = {
            source: ArchivedFolder(store, node, folder, source=source, stats=self._counters)
            for source, folder in folders.items()
        }
        self._on_shipped = on_shipped
        self._lag: dict[str, int] = {}
        self._cycle = ShipStats()
        self._checkpointed: dict = {}
        self._resumed: set[str] = set()

    def open(self) -> None:
        inodes = checkpoint.load(self.checkpoint_path)
        for source, folder in self.folders.items():
            if source not in self._resumed:  # open() is retried while the archive does not answer
                folder.resume(inodes)
                self._resumed.add(source)

    def offer(self, source: str, listing: Listing, final: bool) -> int:
        folder = self.folders[source]
        folder.forget_missing({f.inode for f in listing.files})
        pending = 0
        try:
            for f in listing.files:
                if folder.pending(f, final):
                    pending += 1
                    shipped = folder.ship(f)
                    self._on_shipped(source, shipped)
                    self._cycle.add(shipped)
            folder.flush_renames()
        except StoreError:
            self._counters.count_error("store")
            raise
        self._lag[source] = sum(folder.unarchived_bytes(f) for f in listing.files)
        return pending

    def holds(self, source: str, f: FileState) -> bool:
        return self.folders[source].holds(f)

    def flush(self) -> None:
        inodes = {k: v for folder in self.folders.values() for k, v in folder.inodes().items()}
        if inodes != self._checkpointed:
            try:
                checkpoint.save(self.checkpoint_path, inodes)
            except OSError as e:
                raise StateDirError(
                    f"cannot write the collector's checkpoint {self.checkpoint_path}: {e}; give "
                    "--state-dir a writable directory on a volume that outlives the container"
                ) from e
            self._checkpointed = inodes
        if self._cycle.segments:
            log.info(
                "shipped %d new segments from %d files (%.1f KiB)",
                self._cycle.segments,
                self._cycle.files,
                self._cycle.bytes / 1024,
            )
        self._cycle = ShipStats()

    def close(self, timeout: float) -> bool:
        return True  # every offer is synchronous: nothing is left in flight

    def stats(self) -> ComponentStats:
        c = self._counters
        return ComponentStats(
            c.received,
            c.received_bytes,
            c.sent,
            c.sent_bytes,
            c.dropped,
            c.retries,
            dict(c.errors),
            sum(self._lag.values()),
        )
