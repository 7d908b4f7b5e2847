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
