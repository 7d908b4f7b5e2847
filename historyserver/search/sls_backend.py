"""Log search on an SLS logstore (the one the collectors' SLS sink writes; archive/sls_schema.py names its keys).

- search: GetLogs V2 pages of at most 100 rows (several per page of hits), oldest first; regex mode narrows with the
  query's literal parts and filters with SLS SQL `regexp_like`, one SQL page. The first page also asks SQL for the
  total and the facets (both need the index's doc_value: `rayhistory sls init`); later pages carry the total in
  the cursor.
- An `Incomplete` answer (SLS has not finished scanning) is asked again every RETRY_INTERVAL until the search's
  deadline (--sls-search-timeout); still incomplete then, the answer says `complete: false`.
- histogram: GetHistograms (terms) or an SQL GROUP BY on time (regex), re-binned into the buckets asked for.
- context: the line's `__pack_id__`/`__pack_meta__` (`| with_pack_meta`), then GetContextLogs. Where SLS gives
  no pack meta (undocumented for logs not sent by Logtail or the producer libraries), the lines around it by
  their line numbers, which every log carries, and a warning saying so.

Errors: 401/403 -> SearchAuthFailed (SLS's code and message); quota -> SearchQuotaExceeded; unreachable, 5xx, a
missing project, logstore or index -> SearchUnavailable (the routes then answer from the archive, saying why).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from archive import credentials
from archive import sls_schema as schema
from archive.credentials import CredentialSource
from archive.layout import SessionRef
from archive.settings import SettingsError
from historyserver.search import sls_query as q
from historyserver.search import sls_rows
from historyserver.search.backend import (
    FACETS,
    MAX_LIMIT,
    ContextAnswer,
    SearchAnswer,
    SearchRequest,
)
from historyserver.search.errors import (
    SearchAuthFailed,
    SearchError,
    SearchQuotaExceeded,
    SearchRefused,
    SearchUnavailable,
)
from historyserver.search.match import highlight, matches
from historyserver.search.query import Node
from historyserver.search.regex import Regex, compile_regex, to_sls_plan
from historyserver.search.sls_client import MAX_LINES, Page, SlsReader, SlsRequestError, make_reader
from historyserver.search.to_sls import to_sls

_A = TypeVar("_A")
RETRY_INTERVAL = 0.5  # between asks of an Incomplete answer (the SDK's own interval)
FACET_TOP = 20
MAX_SQL_ROWS = 1_000_000  # SLS SQL's `LIMIT offset, rows`: offset + rows at most this
MAX_CONTEXT = 100  # lines per side, SLS's limit for GetContextLogs
QUOTA_RETRY_AFTER = 10  # seconds a client is told to wait after SLS's quota answer
EARLIEST = 0  # `from` when the search names no start: the logstore's TTL bounds what SLS holds
FUTURE_SLACK = 3600  # `to` when it names no end: raw output lines are stamped when read, a little after "now"


@dataclass(frozen=True)
class SlsSearchConfig:
    endpoint: str
    project: str
    logstore: str
    # RRSA or AccessKeys (archive/credentials.py); not part of the identity: one backend per store
    credentials: CredentialSource = field(compare=False, hash=False, repr=False)
    proxy: str | None = None
    timeout: float = 30.0  # one search, Incomplete retries included
    request_timeout: float = 10.0  # one HTTP request


def config_from_settings(settings: Any, environ: Mapping[str, str] | None = None) -> SlsSearchConfig | None:
    """The server's SLS settings (ServerSettings), credentials from the environment as the collector's; None when
    SLS is off. Raises SettingsError naming what is missing."""
    if not settings.sls_endpoint:
        return None
    missing = [f"--{k.replace('_', '-')}" for k in ("sls_project", "sls_logstore") if not getattr(settings, k)]
    try:
        source = credentials.from_environment(environ)
    except credentials.CredentialsError as e:
        raise SettingsError(f"SLS search is on (--sls-endpoint) but {e}") from None
    if source is None:
        missing.append(
            f"credentials ({' and '.join(credentials.STATIC_VARIABLES)}, or RRSA's "
            f"{', '.join(credentials.RRSA_VARIABLES)})"
        )
    if missing or source is None:
        raise SettingsError(f"SLS search is on (--sls-endpoint) but {', '.join(missing)} is missing")
    return SlsSearchConfig(
        endpoint=settings.sls_endpoint,
        project=settings.sls_project,
        logstore=settings.sls_logstore,
        credentials=source,
        proxy=settings.sls_proxy or None,
        timeout=float(getattr(settings, "sls_search_timeout", 30.0)),
    )


_shared: dict[SlsSearchConfig, SlsBackend] = {}
_shared_lock = threading.Lock()


def shared(config: SlsSearchConfig) -> SlsBackend:
    """One backend per configuration for the server's life: its HTTP session keeps connections (and TLS) to SLS
    open from one search to the next."""
    with _shared_lock:
        backend = _shared.get(config)
        if backend is None:
            backend = _shared[config] = SlsBackend(config)
        return backend


class SlsBackend:
    name = "sls"

    def __init__(
        self,
        config: SlsSearchConfig,
        reader: SlsReader | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.reader = reader or make_reader(config.endpoint, config.credentials, config.request_timeout, config.proxy)
        self._clock, self._sleep, self._wallclock = clock, sleep, wallclock

    # --- search ------------------------------------------------------------------------------------------
    def search(self, sessions: Sequence[SessionRef], req: SearchRequest) -> SearchAnswer:
        deadline = self._clock() + self.config.timeout
        plan = self._plan(sessions, req)
        warnings = list(plan.warnings)
        limit = max(1, min(req.limit, MAX_LIMIT))
        if req.limit > MAX_LIMIT:
            warnings.append(f"limit capped at {MAX_LIMIT} hits per page")
        cursor = sls_rows.Cursor.decode(req.cursor) if req.cursor else sls_rows.Cursor(0, self._to(req), None)
        start, end = self._from(req), cursor.to
        rows, read, complete, exhausted = self._rows(plan, start, end, cursor.offset, limit, deadline)
        total, facets = cursor.total, {}
        if req.cursor is None:
            total, complete_total = self._total(plan, start, end, deadline, warnings)
            complete &= complete_total
            facets = self._facets(plan, start, end, deadline, warnings)
        hits = [
            sls_rows.hit(
                row,
                plan.regex.highlight(sls_rows.message(row))
                if plan.regex
                else highlight(req.query, sls_rows.message(row)),
            )
            for row in rows
        ]
        next_cursor = None if exhausted else sls_rows.Cursor(cursor.offset + read, end, total).encode()
        if not complete:
            warnings.append("SLS had not finished searching when the time ran out: there may be more hits")
        return SearchAnswer("sls", complete, total, hits, next_cursor, facets, warnings)

    def _plan(self, sessions: Sequence[SessionRef], req: SearchRequest) -> _Plan:
        sc = q.scope(sessions)
        warnings = [sc.widened] if sc.widened else []
        narrow = to_sls(req.query)
        scoped = [sc.text, *q.filters(req.filters)]
        if req.mode != "regex":
            return _Plan(q.where([*scoped, f"({narrow})" if narrow != "*" else ""]), None, None, req.query, warnings)
        if not req.regex:
            raise SearchRefused("mode=regex needs a regular expression in q")
        regex = compile_regex(req.regex)
        sls_plan = to_sls_plan(regex, narrow)
        search = q.where([*scoped, f"({sls_plan.search})" if sls_plan.search != "*" else ""])
        return _Plan(search, sls_plan.where, regex, req.query, warnings + list(sls_plan.warnings))

    def _rows(
        self, plan: _Plan, start: int, end: int, offset: int, limit: int, deadline: float
    ) -> tuple[list[dict[str, Any]], int, bool, bool]:
        """(rows that match, SLS rows read, complete, no more rows). SLS's index is looser than our meaning where
        it splits a key's value into tokens, so each row is checked (match.matches, or RE2 for regex mode) and
        paging counts SLS's rows."""
        if plan.where is not None:
            if offset + limit > MAX_SQL_ROWS:
                raise SearchRefused(
                    f"SLS SQL pages stop at row {MAX_SQL_ROWS:,} (its LIMIT); narrow the search, or search the archive"
                )
            page = self._ask(
                lambda: self._sql(start, end, q.page_sql(plan.search, plan.where or "", offset, limit)), deadline
            )
            kept = [r for r in page.rows if plan.keeps(r)]
            return kept, len(page.rows), page.complete, page.complete and len(page.rows) < limit
        rows: list[dict[str, Any]] = []
        read, complete, exhausted = 0, True, False
        while len(rows) < limit and self._clock() < deadline:
            want = min(MAX_LINES, limit - len(rows))
            page = self._ask(
                lambda w=want, o=offset + read: self.reader.get_logs_once(  # type: ignore[misc]
                    self.config.project, self.config.logstore, start, end, plan.search, w, o
                ),
                deadline,
            )
            read += len(page.rows)
            complete &= page.complete
            rows += [r for r in page.rows if plan.keeps(r)]
            if len(page.rows) < want:  # the end, unless SLS ran out of time (then the cursor goes on from here)
                exhausted = page.complete
                break
        return rows, read, complete, exhausted

    @staticmethod
    def _from(req: SearchRequest) -> int:
        since = req.filters.since
        return int(math.floor(since)) if since is not None else EARLIEST

    def _to(self, req: SearchRequest) -> int:
        until = req.filters.until
        return int(math.ceil(until)) if until is not None else self._latest()

    def _latest(self) -> int:
        return int(self._wallclock()) + FUTURE_SLACK

    def _total(
        self, plan: _Plan, start: int, end: int, deadline: float, warnings: list[str]
    ) -> tuple[int | None, bool]:
        if self._clock() >= deadline:  # the hits took the search's time: they are answered without a total
            warnings.append("no total: the search's time (--sls-search-timeout) ran out")
            return None, False
        try:
            page = self._ask(lambda: self._sql(start, end, q.count_sql(plan.search, plan.where)), deadline)
        except SearchRefused as e:
            if plan.where is not None:  # regex mode: only SQL counts what regexp_like keeps
                warnings.append(f"no total: {e}")
                return None, True
            # SQL refused (no analytics on the logstore): the histogram counts the same search's hits
            answer = self._ask(
                lambda: self.reader.get_histograms_once(
                    self.config.project, self.config.logstore, start, end, plan.search
                ),
                deadline,
            )
            warnings.append(f"total from SLS's histogram (SQL refused: {e})")
            return int(answer.get_total_count()), answer.is_completed()
        try:
            return int(page.rows[0]["n"]), page.complete
        except (IndexError, KeyError, TypeError, ValueError):
            warnings.append("no total: SLS's count answer had no number")
            return None, True

    def _facets(
        self, plan: _Plan, start: int, end: int, deadline: float, warnings: list[str]
    ) -> dict[str, dict[str, int]]:
        facets: dict[str, dict[str, int]] = {}
        for name in FACETS:
            if self._clock() >= deadline:
                warnings.append("facets left out: the search's time (--sls-search-timeout) ran out")
                return facets
            sql = q.facet_sql(plan.search, schema.FACET_KEYS[name], plan.where, FACET_TOP)
            try:
                page = self._ask(lambda s=sql: self._sql(start, end, s), deadline)  # type: ignore[misc]
            except SearchRefused as e:
                warnings.append(f"no facets: {e} (facets need doc_value on the keys: `rayhistory sls init`)")
                return {}
            facets[name] = {str(r["value"]): int(r["n"]) for r in page.rows if r.get("value") not in (None, "", "null")}
        return facets

    def _sql(self, start: int, end: int, query: str) -> Page:
        return self.reader.get_logs_once(self.config.project, self.config.logstore, start, end, query, MAX_LINES, 0)

    # --- histogram -------------------------------------------------------------------------------------------
    def histogram(self, sessions: Sequence[SessionRef], req: SearchRequest, buckets: int) -> list[tuple[float, int]]:
        deadline = self._clock() + self.config.timeout
        buckets = max(1, min(buckets, 1000))
        plan = self._plan(sessions, req)
        search, where = plan.search, plan.where
        start, end = self._from(req), self._to(req)
        if req.filters.since is None or req.filters.until is None:  # the chart spans the hits, not 1970..now
            span = self._ask(lambda: self._sql(start, end, q.span_sql(search, where)), deadline).rows
            first, last = (span[0].get("first"), span[0].get("last")) if span else (None, None)
            if first in (None, "", "null"):
                return []
            start = start if req.filters.since is not None else int(float(first))
            end = end if req.filters.until is not None else int(float(last)) + 1
        width = max(1, math.ceil((end - start) / buckets))
        counts = [0] * buckets
        if where is None:
            answer = self._ask(
                lambda: self.reader.get_histograms_once(self.config.project, self.config.logstore, start, end, search),
                deadline,
            )
            for h in answer.get_histograms():
                i = (int(h.get_from()) - start) // width
                if 0 <= i < buckets:
                    counts[i] += int(h.get_count())
        else:
            sql = q.histogram_sql(search, where, start, width)
            rows = self._ask(lambda: self._sql(start, end, sql), deadline).rows
            for r in rows:
                i = (int(float(r["t"])) - start) // width
                if 0 <= i < buckets:
                    counts[i] += int(r["n"])
        return [(float(start + i * width), n) for i, n in enumerate(counts)]

    # --- context ---------------------------------------------------------------------------------------------
    def context(
        self, session: SessionRef, node_id: str, file: str, line: int, before: int, after: int
    ) -> ContextAnswer:
        deadline = self._clock() + self.config.timeout
        before, after = max(0, min(before, MAX_CONTEXT)), max(0, min(after, MAX_CONTEXT))
        here = q.where(
            [
                q.scope([session]).text,
                q.condition(schema.tag(schema.TAG_NODE_ID), node_id),
                q.condition(schema.tag(schema.TAG_FILE), file),
            ]
        )
        anchor = self._ask(
            lambda: self.reader.get_logs_once(
                self.config.project,
                self.config.logstore,
                EARLIEST,
                self._latest(),
                f"{here} and {schema.KEY_LINE} = {int(line)} | with_pack_meta",
                1,
                0,
            ),
            deadline,
        ).rows
        answer = ContextAnswer(session.id, node_id, file, line, [])
        if not anchor:
            raise SearchRefused(f"line {line} of {file} on node {node_id} is not in SLS")
        # (SLS names it as a tag in rows; some answers give it bare)
        pack_id = anchor[0].get(schema.tag(schema.TAG_PACK_ID)) or anchor[0].get(schema.TAG_PACK_ID)
        pack_meta = anchor[0].get(schema.ROW_PACK_META)
        if not before and not after:  # GetContextLogs wants at least one line on a side
            rows = anchor[:1]
        elif pack_id and pack_meta:
            got = self._ask(
                lambda: self.reader.get_context_once(
                    self.config.project, self.config.logstore, pack_id, pack_meta, before, after
                ),
                deadline,
            )
            rows = [dict(x.get_contents(), __time__=x.get_time()) for x in got.get_logs()]
            rows = [r for r in rows if r.get(schema.tag(schema.TAG_FILE), file) == file]
            if not got.is_completed():
                answer.warnings.append("SLS had not finished the context query: lines may be missing")
        else:
            answer.warnings.append(
                "SLS gave no __pack_meta__ for this line, so its context query cannot be used; these are the lines "
                "around it by line number"
            )
            lo, hi = max(1, line - before), line + after
            rows = self._ask(
                lambda: self.reader.get_logs_once(
                    self.config.project,
                    self.config.logstore,
                    EARLIEST,
                    self._latest(),
                    f"{here} and {schema.KEY_LINE} in [{lo} {hi}]",
                    min(MAX_LINES, hi - lo + 1),
                    0,
                ),
                deadline,
            ).rows
        answer.lines = sls_rows.context_lines(rows)
        return answer

    # --- plumbing --------------------------------------------------------------------------------------------
    def _ask(self, call: Callable[[], _A], deadline: float) -> _A:
        """One answer (a Page, or the SDK's histogram or context answer), asked again while SLS says Incomplete and
        the deadline allows."""
        while True:
            try:
                answer = call()
            except SlsRequestError as e:
                raise self._error(e) from None
            done = answer.complete if isinstance(answer, Page) else answer.is_completed()
            if done or self._clock() + RETRY_INTERVAL >= deadline:
                return answer
            self._sleep(RETRY_INTERVAL)

    def _error(self, e: SlsRequestError) -> SearchError:
        where = f"SLS project {self.config.project} at {self.config.endpoint}"
        if e.status == 0:
            return SearchUnavailable(f"{where} cannot be reached: {e.message}")
        if e.status >= 500:
            return SearchUnavailable(f"{where} answered {e.status} {e.code}: {e.message}")
        if "quota" in e.code.lower() or e.status == 429:
            return SearchQuotaExceeded(f"{where} refused for its quota ({e.code}): {e.message}", QUOTA_RETRY_AFTER)
        if e.status in (401, 403):
            return SearchAuthFailed(f"{where} refused our credentials ({e.code}): {e.message}", e.code)
        if e.status == 404 or "index" in e.code.lower() or "index" in e.message.lower():
            return SearchUnavailable(
                f"{where} cannot search logstore {self.config.logstore} ({e.code}: {e.message}); "
                "`rayhistory sls init` creates the logstore and the index the search needs"
            )
        return SearchRefused(f"{where} refused the search ({e.code}): {e.message}")


@dataclass
class _Plan:
    search: str  # the SLS search statement: scope, filters, the query (and regex mode's literals)
    where: str | None  # regex mode: the SQL filter (regexp_like)
    regex: Regex | None
    query: Node
    warnings: list[str]

    def keeps(self, row: Mapping[str, Any]) -> bool:
        """Whether a row SLS returned means a hit: our query on its fields (SLS may match a key's tokens where we
        compare whole values), and RE2 in regex mode (SLS SQL's regexp_like is not RE2)."""
        message = str(row.get(schema.KEY_MESSAGE, ""))
        if self.regex is not None and not self.regex.search(message):
            return False
        return matches(self.query, {f: sls_rows.field(row, k) for f, k in schema.SEARCH_KEYS.items()})
