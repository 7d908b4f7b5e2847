"""The history server's exception tree. Routes map each to one error shape per API family."""

from __future__ import annotations


class HistoryError(Exception):
    status = 500


class SessionNotFound(HistoryError):
    status = 404


class EntityNotFound(HistoryError):
    """An unknown job, task, actor or node inside a known session."""

    status = 404


class BadRequest(HistoryError):
    status = 400


class ArchiveUnavailable(HistoryError):
    status = 503


class Overloaded(HistoryError):
    """Too many heavy requests at once: answered 503 with Retry-After rather than queued without bound."""

    status = 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooLarge(HistoryError):
    """A valid request that would exceed a server limit (422, as Prometheus's execution errors); the message says
    how to narrow it."""

    status = 422


# A setting with a value it cannot use (rayhistory serve prints it and exits 2): the one mechanism's error.
from archive.settings import SettingsError  # noqa: E402,F401
