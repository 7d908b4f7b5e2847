"""A durable local spool: a directory of append-only JSON-lines files, `events-<seq:08d>.jsonl`.

`append` writes a whole batch, fsyncs it (and the directory when it created a file), and only then returns, so a
sender may be acknowledged. A crash can leave at most one torn tail: bytes past the last newline of the file that
was being written, from a batch that was never acknowledged. Opening the spool cuts such a tail off. Readers use
`files()`, whose sizes count acknowledged bytes only, so a file they read only ever grows and its names are never
reused (the archive sink ships spool files like logs: segments named by byte range).

Delivery is at least once: a sender that timed out on a batch the spool had already stored sends it again, and the
complete lines of a batch torn by a crash stay on disk. Readers deduplicate by event id.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from collector.errors import SpoolError, SpoolFull

log = logging.getLogger("rayhistory.collector.spool")
__all__ = ["AppendOnlySpool", "Spool", "SpoolError", "SpoolFile", "SpoolFull", "file_name"]

_NAME = re.compile(r"^events-(\d{8})\.jsonl$")
_WRITE_CHUNK = 1 << 20  # bounded write() calls; a crash between two of them is what opening the spool repairs


def file_name(seq: int) -> str:
    return f"events-{seq:08d}.jsonl"


@dataclass(frozen=True)
class SpoolFile:
    """One spool file as readers may see it: `size` counts acknowledged bytes only. Shaped like the session
    source's LogFile (path, size, inode, mtime_ns), so the archive sink ships it the same way."""

    path: str
    size: int
    inode: int
    mtime_ns: int
    active: bool  # the file appends go to; it cannot be released


class Spool:
    def __init__(
        self, directory: str | os.PathLike[str], max_file_bytes: int = 16 << 20, max_total_bytes: int = 1 << 30
    ) -> None:
        if max_file_bytes <= 0 or max_total_bytes <= 0:
            raise ValueError("max_file_bytes and max_total_bytes must be positive")
        self.directory = Path(directory)
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}  # acknowledged bytes per file
        self._stats: dict[str, tuple[int, int]] = {}  # name -> (inode, mtime_ns)
        self._fd: int | None = None
        self._active: str | None = None
        self._next_seq = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._recover()

    # -- opening ------------------------------------------------------------------------------------------

    def _recover(self) -> None:
        names = sorted(n for n in os.listdir(self.directory) if _NAME.match(n))
        for name in names:
            path = self.directory / name
            size = _complete_length(path)
            if size != path.stat().st_size:
                # Only a batch interrupted by a crash leaves bytes after the last newline; it was never
                # acknowledged and never reported by files(), so no reader has seen these bytes.
                log.warning(
                    "spool file %s ends with a torn line (%d bytes); cutting it off", name, path.stat().st_size - size
                )
                with open(path, "r+b") as f:
                    f.truncate(size)
                    os.fsync(f.fileno())
            st = path.stat()
            self._sizes[name] = size
            self._stats[name] = (st.st_ino, st.st_mtime_ns)
        if names:
            self._next_seq = int(_NAME.match(names[-1]).group(1)) + 1
            # Keep appending to the newest file: the highest sequence number must stay on disk, or a restart
            # after every file was released would reuse names the archive already holds.
            if self._sizes[names[-1]] < self.max_file_bytes:
                self._open(names[-1], create=False)

    def _open(self, name: str, create: bool) -> None:
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT | os.O_EXCL if create else 0)
        self._fd = os.open(self.directory / name, flags, 0o644)
        self._active = name
        if create:
            self._sizes[name] = 0
            self._next_seq = int(_NAME.match(name).group(1)) + 1
            _fsync_dir(self.directory)

    def _rotate(self) -> None:
        self._close_active()
        self._open(file_name(self._next_seq), create=True)

    def _close_active(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._active = None

    # -- the interface ------------------------------------------------------------------------------------

    def append(self, lines: list[bytes]) -> None:
        """Store a batch of lines (without newlines) whole, durably, in one file; raises SpoolFull or SpoolError."""
        if not lines:
            return
        for line in lines:
            if b"\n" in line or b"\r" in line:
                raise ValueError("a spool line must not contain a line break")
        data = b"\n".join(lines) + b"\n"
        with self._lock:
            size = sum(self._sizes.values())
            # An empty spool takes any batch, so one batch larger than the bound cannot wedge a sender forever.
            if size and size + len(data) > self.max_total_bytes:
                raise SpoolFull(size, len(data), self.max_total_bytes)
            try:
                if self._fd is None or (
                    self._sizes[self._active] and self._sizes[self._active] + len(data) > self.max_file_bytes
                ):
                    self._rotate()
                self._write(data)
            except OSError as e:
                raise SpoolError(f"could not store {len(lines)} lines in {self.directory}: {e}") from e

    def _write(self, data: bytes) -> None:
        assert self._fd is not None and self._active is not None
        name, committed = self._active, self._sizes[self._active]
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view[:_WRITE_CHUNK])
                view = view[written:]
            os.fsync(self._fd)
        except OSError:
            # Take the unacknowledged bytes back; if even that fails, leave the file (its tail is cut off at the
            # next open) and write to a new one, so no later batch lands behind a torn line.
            try:
                os.ftruncate(self._fd, committed)
                os.fsync(self._fd)
            except OSError:
                self._close_active()
            raise
        st = os.fstat(self._fd)
        self._sizes[name] = committed + len(data)
        self._stats[name] = (st.st_ino, st.st_mtime_ns)
        if self._sizes[name] >= self.max_file_bytes:
            self._close_active()

    def files(self) -> list[SpoolFile]:
        """The spool's files, oldest first, with their acknowledged sizes."""
        with self._lock:
            return [
                SpoolFile(name, self._sizes[name], *self._stats.get(name, (0, 0)), active=name == self._active)
                for name in sorted(self._sizes)
            ]

    def release(self, name: str) -> None:
        """Delete a file the caller has shipped. The active file cannot be released: it is still growing."""
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a spool file name (events-<seq>.jsonl)")
        with self._lock:
            if name == self._active:
                raise SpoolError(f"{name} is the file being appended to; release it after it rotates")
            if name not in self._sizes:
                return
            if name == file_name(self._next_seq - 1) and self._active is None:
                # The newest file carries the sequence forward across a restart: keep a new, empty one.
                self._rotate()
            try:
                os.unlink(self.directory / name)
            except FileNotFoundError:
                pass
            _fsync_dir(self.directory)
            del self._sizes[name]
            self._stats.pop(name, None)

    @property
    def size(self) -> int:
        """Bytes the spool holds (acknowledged batches in files not yet released)."""
        with self._lock:
            return sum(self._sizes.values())

    def path(self, name: str) -> Path:
        return self.directory / name

    def close(self) -> None:
        with self._lock:
            self._close_active()


def _complete_length(path: Path) -> int:
    """The length of the file up to and including its last newline."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            step = min(1 << 16, pos)
            f.seek(pos - step)
            chunk = f.read(step)
            i = chunk.rfind(b"\n")
            if i >= 0:
                return pos - step + i + 1
            pos -= step
        return 0


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AppendOnlySpool:
    """Files `<prefix>-<seq>.<ext>` in one directory that only grow; each append is whole lines, then fsync.

    The pull sources' spool (metrics scrapes, API snapshots): nothing waits on an acknowledgement there, so
    unlike Spool it needs no bound and no release; its topology source (sources/folders.py) deletes files once
    archived.
    """

    def __init__(self, directory: str | os.PathLike[str], prefix: str, ext: str, max_file_bytes: int) -> None:
        self.dir = Path(directory)
        self.prefix, self.ext, self.max_file_bytes = prefix, ext, max_file_bytes
        self._pattern = re.compile(rf"^{re.escape(prefix)}-(\d{{6}})\.{re.escape(ext)}$")
        self._fd: int | None = None
        self._size = 0
        self.seq = 0
        self._lock = threading.Lock()

    def files(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.iterdir() if self._pattern.match(p.name))

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        existing = self.files()
        if self.seq == 0 and existing:
            # Resume in the newest file when it ends on a whole line; otherwise never touch it again.
            last = existing[-1]
            self.seq = int(self._pattern.match(last.name).group(1))
            size = last.stat().st_size
            if size and (size >= self.max_file_bytes or not _ends_with_newline(last)):
                self.seq += 1
        else:
            self.seq += 1
        path = self.dir / f"{self.prefix}-{self.seq:06d}.{self.ext}"
        created = not path.exists()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        if created:  # the new name must survive a crash too
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def append(self, data: bytes) -> None:
        """Write complete lines durably; raises OSError (the caller counts it) and moves on to a new file then."""
        assert data.endswith(b"\n"), "spool appends must be whole lines"
        with self._lock:
            if self._fd is not None and self._size and self._size + len(data) > self.max_file_bytes:
                self._close()
            if self._fd is None:
                self._open()
            assert self._fd is not None
            try:
                view = memoryview(data)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
                    self._size += n
                os.fsync(self._fd)
            except OSError:
                self._close()  # a partial line may be on disk: the next append opens the next file
                raise

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._size = 0

    def close(self) -> None:
        with self._lock:
            self._close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


# --- targets ---------------------------------------------------------------------------------------------------
