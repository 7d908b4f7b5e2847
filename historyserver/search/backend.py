"""What a log-search backend answers and how it is asked (search.md): the archive's DuckDB tables
(archive_backend.py) and an SLS logstore (sls_backend.py) implement SearchBackend; routes and the CLI see only these
types. Times are epoch seconds; a hit's `line` is 1-based and `offset` the byte where that line starts in the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from archive.layout import SessionRef

if TYPE_CHECKING:
    from historyserver.search.query import Node

MAX_LIMIT = 1000  # hits per page, whatever `limit` asks (the answer's warnings say when it was capped)
FACETS = ("node_id", "file", "level", "job_id")
HIT_KINDS = ("log", "task_error", "actor_error", "job_error")


@dataclass
class SearchFilters:
    node_id: tuple[str, ...] = ()
    file: tuple[str, ...] = ()
    job_id: tuple[str, ...] = ()
    level: tuple[str, ...] = ()
    since: float | None = None  # epoch seconds, inclusive
    until: float | None = None  # epoch seconds, exclusive


@dataclass
class SearchRequest:
    query: Node  # parsed from `text` (query.parse); MatchAll in regex mode when there is nothing to narrow with
    text: str  # as the user typed it (for SLS, and for the answer's echo)
    mode: Literal["terms", "regex"] = "terms"
    regex: str | None = None  # regex mode: the RE2 pattern, grep -E semantics, matched against each line
    filters: SearchFilters = field(default_factory=SearchFilters)
    limit: int = 100
    cursor: str | None = None  # opaque, from a previous answer's next_cursor


@dataclass
class Hit:
    kind: str  # one of HIT_KINDS
    session: str  # SessionRef.id
    node_id: str | None
    file: str | None  # path under the session's logs/ (None for task/actor/job errors)
    line: int | None  # 1-based
    offset: int | None  # byte offset of the line's start
    time: float | None
    level: str | None
    job_id: str | None
    message: str
    match: list[tuple[int, int]]  # character ranges of `message` to highlight, [start, end)
    url: str  # our page showing the line (log view at that line) or the failed task/actor/job
    task_id: str | None = None
    actor_id: str | None = None
    task_name: str | None = None
    actor_name: str | None = None
    worker_id: str | None = None
    pid: int | None = None
    component: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["match"] = [list(r) for r in self.match]
        return out


@dataclass
class SearchAnswer:
    backend: Literal["archive", "sls"]
    complete: bool  # False while a backend's answer is partial (SLS `Incomplete`, a session not compacted yet)
    total: int | None  # exact count of matching lines and errors, None when the backend cannot tell
    hits: list[Hit]
    next_cursor: str | None
    facets: dict[str, dict[str, int]]  # FACETS -> value -> count (top values)
    warnings: list[str] = field(default_factory=list)
    pending_sessions: int = 0  # sessions left out because their tables are still being built (search/pending.py)

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "complete": self.complete,
            "pending_sessions": self.pending_sessions,
            "total": self.total,
            "hits": [h.to_json() for h in self.hits],
            "next_cursor": self.next_cursor,
            "facets": self.facets,
            "warnings": self.warnings,
        }


@dataclass
class ContextLine:
    line: int
    offset: int
    message: str  # the line's text as in the file (without its newline)
    time: float | None = None
    level: str | None = None
    task_name: str | None = None
    actor_name: str | None = None


@dataclass
class ContextAnswer:
    session: str
    node_id: str
    file: str
    line: int  # the line asked about
    lines: list[ContextLine]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SearchBackend(Protocol):
    name: str  # "archive" | "sls"

    def search(self, sessions: Sequence[SessionRef], req: SearchRequest) -> SearchAnswer: ...

    def histogram(self, sessions: Sequence[SessionRef], req: SearchRequest, buckets: int) -> list[tuple[float, int]]:
        """Hits over time: (bucket start, epoch seconds; count) for `buckets` equal buckets of the range."""
        ...

    def context(
        self, session: SessionRef, node_id: str, file: str, line: int, before: int, after: int
    ) -> ContextAnswer: ...
