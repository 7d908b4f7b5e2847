"""The SLS query text of a search: our query (translated by to_sls.py) scoped to the asked sessions and narrowed by
the filters, plus the SQL that counts, facets, pages regex matches and bins a histogram. Text only: no I/O.

SLS allows at most 30 conditions in a search (reference section 5b), so the session scope is spelt as narrowly as
fits in SCOPE_CONDITIONS: each session by namespace, cluster and name; else each (namespace, cluster); else each
namespace (the time range still applies); beyond that the search is refused and names what narrows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from archive import sls_schema as schema
from archive.layout import SessionRef
from historyserver.search.backend import SearchFilters
from historyserver.search.errors import SearchRefused

SCOPE_CONDITIONS = 12  # of SLS's 30 per search: the rest are the user's
FILTER_KEYS = {  # SearchFilters field -> logstore key
    "node_id": schema.SEARCH_KEYS["node_id"],
    "file": schema.SEARCH_KEYS["file"],
    "job_id": schema.SEARCH_KEYS["job_id"],
    "level": schema.SEARCH_KEYS["level"],
}
# Columns a regex-mode SQL page selects: what a hit is built from (each needs doc_value, archive/sls_schema.py).
HIT_COLUMNS = (
    schema.tag(schema.TAG_NAMESPACE),
    schema.tag(schema.TAG_CLUSTER),
    schema.tag(schema.TAG_SESSION),
    schema.tag(schema.TAG_NODE_ID),
    schema.tag(schema.TAG_FILE),
    schema.tag(schema.TAG_WORKER_ID),
    schema.ROW_TIME,
    schema.KEY_LINE,
    schema.KEY_OFFSET,
    schema.KEY_LEVEL,
    schema.KEY_JOB_ID,
    schema.KEY_PID,
    schema.KEY_COMPONENT,
    schema.KEY_TASK_NAME,
    schema.KEY_ACTOR_NAME,
    schema.KEY_MESSAGE,
)


def value(text: str) -> str:
    """A value for `key: value`: quoted, so keywords and operators in it are literal; a value SLS would split into
    several tokens (it holds a delimiter, e.g. a file under a folder) is a phrase, `#"..."`, which keeps their order."""
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "#" + quoted if any(c in schema.DELIMITERS for c in text) else quoted


def condition(key: str, text: str) -> str:
    return f"{key}: {value(text)}"


def any_of(key: str, values: Sequence[str]) -> str:
    parts = [condition(key, v) for v in values]
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


@dataclass
class Scope:
    text: str
    widened: str | None  # what the scope was widened to, when it was (for the answer's warnings)


def scope(sessions: Sequence[SessionRef]) -> Scope:
    """The sessions as an SLS condition, as narrow as SCOPE_CONDITIONS allows."""
    ns, cl, se = (schema.tag(t) for t in (schema.TAG_NAMESPACE, schema.TAG_CLUSTER, schema.TAG_SESSION))
    refs = sorted(set(sessions), key=lambda r: (r.namespace, r.cluster, r.session))
    if not refs:
        raise SearchRefused("no session to search: the filters leave none")
    if 3 * len(refs) <= SCOPE_CONDITIONS:
        terms = [
            f"({condition(ns, r.namespace)} and {condition(cl, r.cluster)} and {condition(se, r.session)})"
            for r in refs
        ]
        return Scope(_or(terms), None)
    pairs = sorted({(r.namespace, r.cluster) for r in refs})
    if 2 * len(pairs) <= SCOPE_CONDITIONS:
        terms = [f"({condition(ns, n)} and {condition(cl, c)})" for n, c in pairs]
        return Scope(_or(terms), f"{len(refs)} sessions are searched as their {len(pairs)} cluster(s) on SLS")
    spaces = sorted({r.namespace for r in refs})
    if len(spaces) <= SCOPE_CONDITIONS:
        return Scope(
            _or([condition(ns, n) for n in spaces]),
            f"{len(refs)} sessions are searched as their {len(spaces)} namespace(s) on SLS",
        )
    raise SearchRefused(
        f"{len(refs)} sessions in {len(spaces)} namespaces are more than one SLS search can name "
        f"({SCOPE_CONDITIONS} conditions); narrow with namespace=, cluster= or session="
    )


def _or(terms: list[str]) -> str:
    return terms[0] if len(terms) == 1 else "(" + " or ".join(terms) + ")"


def filters(f: SearchFilters) -> list[str]:
    return [any_of(key, getattr(f, name)) for name, key in FILTER_KEYS.items() if getattr(f, name)]


def where(parts: Sequence[str]) -> str:
    """The search part: conditions joined by `and` (each already parenthesised where it needs to be)."""
    kept = [p for p in parts if p and p != "*"]
    return " and ".join(kept) if kept else "*"


def column(key: str) -> str:
    """A key as an SQL column: tags and keys with ':' need double quotes."""
    return '"' + key.replace('"', '""') + '"'


def sql(search: str, select: str, where: str | None = None, tail: str = "") -> str:
    """`search | SELECT ... [WHERE where] tail` (SLS SQL has no FROM); `where` is regex mode's regexp_like
    (regex.py's to_sls_plan)."""
    clause = f" WHERE {where}" if where else ""
    return f"{search} | SELECT {select}{clause}{(' ' + tail) if tail else ''}"


def count_sql(search: str, where: str | None) -> str:
    return sql(search, "count(*) AS n", where)


def facet_sql(search: str, key: str, where: str | None, top: int) -> str:
    return sql(search, f"{column(key)} AS value, count(*) AS n", where, f"GROUP BY value ORDER BY n DESC LIMIT {top}")


def span_sql(search: str, where: str | None) -> str:
    return sql(search, f"min({schema.ROW_TIME}) AS first, max({schema.ROW_TIME}) AS last", where)


def page_sql(search: str, where: str, offset: int, limit: int) -> str:
    select = ", ".join(column(c) for c in HIT_COLUMNS)
    order = f"ORDER BY {schema.ROW_TIME}, {column(schema.KEY_LINE)} LIMIT {offset}, {limit}"
    return sql(search, select, where, order)


def histogram_sql(search: str, where: str, start: int, width: int) -> str:
    bucket = f"{start} + ({schema.ROW_TIME} - {start}) / {width} * {width}"
    return sql(search, f"{bucket} AS t, count(*) AS n", where, "GROUP BY t ORDER BY t LIMIT 10000")
