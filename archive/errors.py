"""The archive's exception tree, in one place.

ArchiveError
  StoreError            a storage backend failed; carries the archive URL
    NotFound            the key does not exist (a normal answer, not an outage)
    BackendUnavailable  the store could not be reached, or answered with a server error
    AccessDenied        the store refused the credentials
  InvalidArchiveURL     the archive URL cannot be understood
  credentials.CredentialsError  no usable cloud credentials (RRSA set up halfway, STS refused or unreachable)
layout.InvalidName      (a ValueError) a name that cannot be part of a key
"""

from __future__ import annotations


class ArchiveError(Exception):
    """Base of every error raised by the archive package."""


class InvalidArchiveURL(ArchiveError, ValueError):
    pass


class StoreError(ArchiveError):
    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{message} (archive {url})")
        self.url = url
        self.message = message


class NotFound(StoreError):
    pass


class BackendUnavailable(StoreError):
    pass


class AccessDenied(StoreError):
    pass
