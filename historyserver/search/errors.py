"""The errors of log search, one class per thing a caller does differently (routes map them to our error shape
through HistoryError's status; the backend chooser falls back on SearchUnavailable)."""

from __future__ import annotations

from historyserver.errors import HistoryError


class SearchError(HistoryError):
    pass


class SearchRefused(SearchError):
    """Bad input (a query that does not parse, a regex RE2 refuses, since after until): fix the request.
    `position` is the 0-based character of the query where it went wrong, when there is one."""

    status = 400

    def __init__(self, message: str, position: int | None = None, expected: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.position = position
        self.expected = expected


class SearchUnavailable(SearchError):
    """The backend cannot be reached (SLS down, its endpoint wrong): the chooser falls back to the archive."""

    status = 503


class SearchQuotaExceeded(SearchError):
    """The backend refused for its quota or rate (SLS's QuotaExceed, ReadQuotaExceed): retry later."""

    status = 503

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SearchAuthFailed(SearchError):
    """The backend refused our credentials (SLS 401/403): 502, with the backend's own code and message."""

    status = 502

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code
