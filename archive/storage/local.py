"""A local directory as the archive: the embedded default."""

from __future__ import annotations

import builtins
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from archive.atomic import write_atomic
from archive.errors import AccessDenied, BackendUnavailable, NotFound
from archive.storage.base import ObjectInfo, Store


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"key {key!r} leaves the archive root")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            try:
                write_atomic(path, data)
            except FileNotFoundError:
                # delete_many() prunes folders it empties; one may vanish between mkdir and the temp file.
                write_atomic(path, data)
        except PermissionError as e:
            raise AccessDenied(self.url, f"cannot write {key}: {e.strerror}; check the directory's permissions") from e
        except OSError as e:
            raise BackendUnavailable(self.url, f"cannot write {key}: {e.strerror}") from e

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            raise NotFound(self.url, f"no object {key}") from e
        except PermissionError as e:
            raise AccessDenied(self.url, f"cannot read {key}: {e.strerror}") from e
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:  # a key too long for the file system names no object
                raise NotFound(self.url, f"no object {key[:200]}...") from e
            raise

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the deepest directory the prefix names, then filter by the rest of the prefix.
        base_dir, _, _ = prefix.rpartition("/")
        start = self._path(base_dir) if base_dir else self.root
        found: builtins.list[ObjectInfo] = []
        stack: builtins.list[tuple[Path | str, str]] = [(start, base_dir + "/" if base_dir else "")]
        while stack:
            path, rel = stack.pop()
            try:
                entries = list(os.scandir(path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                if e.errno == errno.ENAMETOOLONG:  # a key no object can have: nothing under it
                    continue
                raise
            for entry in entries:
                key = rel + entry.name
                if entry.is_dir(follow_symlinks=False):
                    if prefix.startswith(key + "/") or key.startswith(prefix) or (key + "/").startswith(prefix):
                        stack.append((entry.path, key + "/"))
                elif key.startswith(prefix) and not entry.name.startswith(".tmp-"):
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue
                    found.append(ObjectInfo(key, st.st_size, f"{st.st_mtime_ns:x}-{st.st_ino:x}"))
        found.sort(key=lambda o: o.key)
        return iter(found)

    def list_dirs(self, prefix: str) -> builtins.list[str]:
        path = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not path.is_dir():
            return []
        return sorted(p.name for p in path.iterdir() if p.is_dir())

    delete_batch = 200  # no batch API: a smaller batch only makes progress finer

    def delete_many(self, keys: builtins.list[str]) -> None:
        for key in keys:
            path = self._path(key)
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError):
                pass
            except PermissionError as e:
                raise AccessDenied(self.url, f"cannot delete {key}: {e.strerror}; check permissions") from e
            except OSError as e:
                raise BackendUnavailable(self.url, f"cannot delete {key}: {e.strerror}") from e
            self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        """Remove the folders a deletion left empty, up to the root, so that list_dirs() shows no ghosts."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone, or shared and just refilled): stop here
                return
            folder = folder.parent

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AccessDenied(self.url, f"cannot create the archive directory: {e.strerror}") from e
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise AccessDenied(self.url, "the archive directory is not writable; check its permissions")
