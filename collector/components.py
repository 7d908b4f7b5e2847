"""The interfaces between the collector's sources and sinks (the topology that joins them: collector/topology.py).

A source is a folder of growing files; a sink takes listings of those folders and delivers what is new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from collector.stats import ComponentStats


class FileState(Protocol):  # collector.sources.session_dir.LogFile and collector.spool.SpoolFile fit
    path: str  # relative to the source's folder, '/'-separated
    size: int
    inode: int
    mtime_ns: int


@dataclass
class Listing:
    files: list[FileState]  # oldest first
    finished: set[str] = field(default_factory=set)  # paths the source no longer appends to: it may release them


class Source(Protocol):
    name: str  # the component label and the archive's source name
    folder: Path  # where its files are

    def start(self) -> None:
        """Begin pulling (a thread per pulling source); nothing for folders Ray writes."""

    def list(self) -> Listing: ...

    def release(self, path: str) -> None:
        """Every sink holds this finished file whole: a spool deletes it, Ray's folders keep theirs."""

    def flush(self) -> None:
        """One last pull before the final upload (Ray may be stopping: failures are only counted)."""

    def close(self) -> None: ...

    def stats(self) -> ComponentStats: ...


class Sink(Protocol):
    name: str
    inputs: frozenset[str] | None  # the sources it takes; None: every source

    def open(self) -> None:
        """Learn where the destination stands; may raise archive.errors.StoreError (the service retries)."""

    def offer(self, source: str, listing: Listing, final: bool) -> int:
        """Deliver (or queue) what is new in the listing; returns how many files had something pending."""

    def holds(self, source: str, f: FileState) -> bool:
        """Whether the destination has every byte of f."""

    def flush(self) -> None:
        """The end of a cycle in which every offer succeeded (checkpoints)."""

    def close(self, timeout: float) -> bool:
        """Deliver what was offered, within timeout; False when something is left (its checkpoint resumes)."""

    def stats(self) -> ComponentStats: ...
