"""PromQL errors, each carrying the `errorType` Prometheus answers with and the HTTP status it uses."""

from __future__ import annotations


class PromQLError(Exception):
    error_type = "internal"
    status = 500


class BadData(PromQLError):
    """Unparseable expression or parameter (Prometheus: 400 bad_data)."""

    error_type = "bad_data"
    status = 400


class ExecutionError(PromQLError):
    """The query is valid but cannot be run as asked, e.g. more than 11,000 points per series (422 execution)."""

    error_type = "execution"
    status = 422


class QueryTimeout(PromQLError):
    error_type = "timeout"
    status = 503
