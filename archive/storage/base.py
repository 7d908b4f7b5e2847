"""The small interface every storage backend implements."""

from __future__ import annotations

import abc
import builtins
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    tag: str = ""  # changes whenever the object is rewritten (ETag, or mtime for a local file)


class Store(abc.ABC):
    """Keys are '/'-separated paths relative to the archive root; values are whole objects.

    put() is atomic: a reader sees the old object, the new one, or none, never a partial one.
    """

    url: str

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; raises NotFound if there is none."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with prefix, in key order."""

    @abc.abstractmethod
    def list_dirs(self, prefix: str) -> builtins.list[str]:
        """The names one level below prefix (which ends with '/'), like `ls`."""

    @abc.abstractmethod
    def delete_many(self, keys: builtins.list[str]) -> None:
        """Delete these keys; a key that is already gone is not an error, so a rerun can finish a deletion.

        Raises AccessDenied or BackendUnavailable naming the first key that could not be deleted; the others
        may or may not be gone (callers that need an order delete in several calls)."""

    def delete(self, key: str) -> None:
        self.delete_many([key])

    # How many keys one delete_many() call should carry (S3's DeleteObjects takes at most 1000).
    delete_batch: int = 1000

    @abc.abstractmethod
    def check(self) -> None:
        """Raise AccessDenied or BackendUnavailable (with what to check) unless the archive is usable."""

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """compute(), or what it returned before for the same key where listings are kept (snapshot.py)."""
        return compute()

    def exists(self, key: str) -> bool:
        from archive.errors import NotFound

        try:
            self.get(key)
        except NotFound:
            return False
        return True
