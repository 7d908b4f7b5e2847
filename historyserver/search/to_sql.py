"""The query as a DuckDB WHERE clause over the archive's log-lines table, and what its term index can use.

Token equality, not substring: `error` must not match `errors` (but does match `error:`). A token is a maximal run
of non-delimiters, so "the lower-cased message has token t" is the regular expression (^|[D])t([D]|$), and "a
token starts with t" is (^|[D])t. A plain `contains` runs first: it is far cheaper than RE2 and rejects most rows.
Every leaf is coalesced to false so that `not` over a missing field (NULL) is true, as in match.matches.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from .query import DELIMITERS, And, MatchAll, Node, Not, Or, Phrase, Term


def re2_escape(text: str) -> str:
    """Literal text as RE2: a backslash before ASCII punctuation, \\x{..} for space and control characters."""
    return "".join(_re2_char(c) for c in text)


def _re2_char(c: str) -> str:
    if c.isalnum() or c == "_" or ord(c) >= 128:
        return c
    return "\\" + c if 0x20 < ord(c) < 0x7F else "\\x{%x}" % ord(c)


_D = "[" + re2_escape(DELIMITERS) + "]"
_START = f"(^|{_D})"
_END = f"({_D}|$)"

MAX_ALTERNATIVES = 32  # beyond this, required_tokens gives up narrowing rather than grow a huge disjunction

IndexToken = tuple[str, bool]  # (lower-case token, prefix)


def to_sql(
    node: Node, columns: Mapping[str, str] | None = None, *, lowered: Collection[str] = ()
) -> tuple[str, list[object]]:
    """A WHERE clause and its parameters. `columns` maps our field names to SQL expressions (default: the field
    name as a quoted column); fields in `lowered` are stored lower-case already, so they are compared bare (which
    also lets DuckDB prune row groups by their min/max)."""
    params: list[object] = []
    sql = _sql(node, dict(columns or {}), frozenset(lowered), params)
    return sql, params


def _column(field: str, columns: dict[str, str], lowered: frozenset[str]) -> str:
    col = columns.get(field, '"' + field.replace('"', '""') + '"')
    return col if field in lowered else f"lower(CAST({col} AS VARCHAR))"


def _sql(node: Node, columns: dict[str, str], lowered: frozenset[str], params: list[object]) -> str:
    if isinstance(node, MatchAll):
        return "TRUE"
    if isinstance(node, Not):
        return f"(NOT {_sql(node.item, columns, lowered, params)})"
    if isinstance(node, (And, Or)):
        op = " AND " if isinstance(node, And) else " OR "
        return "(" + op.join(_sql(i, columns, lowered, params) for i in node.items) + ")"
    col = _column(node.field, columns, lowered)
    if isinstance(node, Term) and node.field != "message":
        if node.prefix and not node.text:
            return f"({col} IS NOT NULL)"
        params.append(node.text)
        return f"coalesce(starts_with({col}, ?), false)" if node.prefix else f"coalesce({col} = ?, false)"
    if isinstance(node, Term):
        pattern = _START + re2_escape(node.text) + ("" if node.prefix else _END)
        needle = node.text
    else:
        pattern = _START + f"{_D}+".join(re2_escape(t) for t in node.tokens) + _END
        needle = max(node.tokens, key=len)
    params.extend([needle, pattern])
    return f"coalesce(contains({col}, ?) AND regexp_matches({col}, ?), false)"


def required_tokens(node: Node) -> list[frozenset[IndexToken]] | None:
    """What a term index can narrow by: alternatives (any one may hold) of token sets (all must occur in the
    message) such that every matching line satisfies one alternative. None when some matching line need contain no
    message token at all (a `not`, a field-only query, `*`): then only a scan answers."""
    dnf = _dnf(node)
    return None if any(not alt for alt in dnf) else dnf


def _dnf(node: Node) -> list[frozenset[IndexToken]]:
    if isinstance(node, Term) and node.field == "message":
        return [frozenset({(node.text, node.prefix)})]
    if isinstance(node, Phrase) and node.field == "message":
        return [frozenset((t, False) for t in node.tokens)]
    if isinstance(node, Or):
        alts = [alt for item in node.items for alt in _dnf(item)]
        if any(not a for a in alts) or len(alts) > MAX_ALTERNATIVES:
            return [frozenset()]
        return list(dict.fromkeys(alts))
    if isinstance(node, And):
        acc: list[frozenset[IndexToken]] = [frozenset()]
        for item in node.items:
            alts = _dnf(item)
            if alts == [frozenset()] or len(acc) * len(alts) > MAX_ALTERNATIVES:
                continue  # a weaker requirement is still a true one
            acc = list(dict.fromkeys(a | b for a in acc for b in alts))
        return acc
    return [frozenset()]  # Not, MatchAll, other fields: no message token is implied
