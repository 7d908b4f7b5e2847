"""A view of a store whose listings are taken once: for reading a closed session in several passes."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from archive.storage.base import ObjectInfo, Store


class ListingSnapshot(Store):
    """Reads and writes go to `inner`; each prefix is listed once and its listing reused, and so is anything
    derived from one (memo: archive/logs.py keeps its parsed segment lists there).

    Only for objects that no longer change: a closed session's archive (its end marker is written after its last
    segment). The end of a folded session lists every node four times (its backlog, the last folds, the reading
    pass, the log tables): 0.5 s a time for a 1M-task session on a local disk, a LIST request per 1,000 keys on S3.
    """

    def __init__(self, inner: Store) -> None:
        self.inner, self.url = inner, inner.url
        self._lock = threading.Lock()
        self._lists: dict[str, builtins.list[ObjectInfo]] = {}
        self._dirs: dict[str, builtins.list[str]] = {}
        self._memo: dict[Hashable, Any] = {}

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete_many(self, keys: builtins.list[str]) -> None:
        self.inner.delete_many(keys)

    def check(self) -> None:
        self.inner.check()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return iter(self.memo(("list", prefix), lambda: builtins.list(self.inner.list(prefix))))

    def list_dirs(self, prefix: str) -> builtins.list[str]:
        return builtins.list(self.memo(("dirs", prefix), lambda: self.inner.list_dirs(prefix)))

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._memo:
                return self._memo[key]
        value = compute()
        with self._lock:
            return self._memo.setdefault(key, value)
