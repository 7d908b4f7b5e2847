"""Which backend answers a search: SLS when the server is given a logstore (--sls-endpoint/--sls-project/
--sls-logstore), falling back to the archive, with a warning in the answer, when SLS cannot be reached; else the
archive's log tables."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archive.layout import SessionRef
from historyserver.search.archive_backend import ArchiveBackend
from historyserver.search.backend import ContextAnswer, SearchAnswer, SearchBackend, SearchRequest
from historyserver.search.errors import SearchUnavailable
from historyserver.search.log_index import SEARCH_TABLES
from historyserver.search.pending import Pending

log = logging.getLogger("rayhistory.search")


def search_backend(services: Any, across: bool = False, archive: ArchiveBackend | None = None) -> SearchBackend:
    """The backend for this server's settings (`services`: historyserver.services.Services). `across`: a search
    across sessions, where the archive leaves out (and queues) sessions not compacted yet (search/pending.py);
    SLS reads none of our tables, so it searches every session either way. `archive`: the one to use (a route
    that reads its `pending` afterwards)."""
    archive = archive or archive_backend(services, across)
    if not getattr(services.settings, "sls_endpoint", None):
        return archive
    from historyserver.search import sls_backend  # the SDK only when SLS is on

    config = sls_backend.config_from_settings(services.settings)
    if config is None:
        return archive
    return Fallback(sls_backend.shared(config), archive)


def archive_backend(services: Any, across: bool = False) -> ArchiveBackend:
    def tables_dir(ref: SessionRef) -> Path:
        # Routes pick the sessions through the request's view of the catalog (access applies there).
        return Path(services.warehouse.db(services.catalog.get(ref.id), needs=SEARCH_TABLES).dir)

    pending = None
    if across:
        pending = Pending(
            lambda ref: services.warehouse.ready(services.catalog.get(ref.id)),
            lambda ref: services.compactor.submit(services.catalog.get(ref.id)),
            lambda ref: services.compactor.error(ref.id),
        )
    return ArchiveBackend(tables_dir, services.log_indexes, pending)


class Fallback:
    """`primary` (SLS) unless it is unavailable: then `fallback` (the archive) answers, saying so."""

    def __init__(self, primary: SearchBackend, fallback: SearchBackend) -> None:
        self.primary, self.fallback = primary, fallback
        self.name = primary.name

    def _warning(self, e: Exception) -> str:
        log.warning("log search: %s is unavailable, the archive answers: %s", self.primary.name, e)
        return f"{self.primary.name.upper()} is unavailable ({e}); the archive answered instead"

    def search(self, sessions: Sequence[SessionRef], req: SearchRequest) -> SearchAnswer:
        try:
            return self.primary.search(sessions, req)
        except SearchUnavailable as e:
            warning = self._warning(e)
        answer = self.fallback.search(sessions, req)
        answer.warnings.insert(0, warning)
        return answer

    def histogram(self, sessions: Sequence[SessionRef], req: SearchRequest, buckets: int) -> list[tuple[float, int]]:
        try:
            return self.primary.histogram(sessions, req, buckets)
        except SearchUnavailable as e:
            self._warning(e)
        self.name = self.fallback.name  # one Fallback per request: the answer names who counted
        return self.fallback.histogram(sessions, req, buckets)

    def context(
        self, session: SessionRef, node_id: str, file: str, line: int, before: int, after: int
    ) -> ContextAnswer:
        try:
            return self.primary.context(session, node_id, file, line, before, after)
        except SearchUnavailable as e:
            warning = self._warning(e)
        answer = self.fallback.context(session, node_id, file, line, before, after)
        answer.warnings.insert(0, warning)
        return answer
