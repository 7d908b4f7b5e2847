"""Storage backends behind one interface; open_store() picks one from the archive URL."""

from __future__ import annotations

from urllib.parse import urlparse

from archive.errors import InvalidArchiveURL
from archive.storage.base import ObjectInfo, Store

__all__ = ["ObjectInfo", "Store", "open_store"]


def open_store(url: str) -> Store:
    """`s3://bucket/prefix` for S3-compatible stores; a path or `file://path` for a local directory."""
    if not url:
        raise InvalidArchiveURL("no archive given: pass --archive with a directory or s3://bucket/prefix")
    scheme = urlparse(url).scheme
    if scheme == "s3":
        from archive.storage.s3 import S3Store

        return S3Store(url)
    if scheme == "file":
        from archive.storage.local import LocalStore

        return LocalStore(urlparse(url).path)
    if scheme in ("",) or (len(scheme) == 1 and url[1] == ":"):
        from archive.storage.local import LocalStore

        return LocalStore(url)
    raise InvalidArchiveURL(f"unsupported archive URL {url!r}: use a directory, file://path or s3://bucket/prefix")
