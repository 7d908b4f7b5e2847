"""The query evaluated in Python, over one line's fields: the reference that to_sql and to_sls are tested against,
the SLS backend's check of what SLS returned, and the highlight ranges of a hit."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .query import DELIMITERS, And, MatchAll, Node, Not, Or, Phrase, Term

_TOKEN = re.compile("[^" + re.escape(DELIMITERS) + "]+")

Fields = Mapping[str, "str | int | None"]


def token_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, lower-case token) of each token, in order. Delimiters are ASCII and no character lower-cases
    into one, so lower-casing per token gives the tokens of the lower-cased text (what the SQL matches)."""
    return [(m.start(), m.end(), m.group().lower()) for m in _TOKEN.finditer(text)]


def matches(node: Node, fields: Fields) -> bool:
    """Whether a line with these fields (`message`, `node_id`, ...; a missing field is None) matches the query."""
    if isinstance(node, MatchAll):
        return True
    if isinstance(node, Not):
        return not matches(node.item, fields)
    if isinstance(node, And):
        return all(matches(i, fields) for i in node.items)
    if isinstance(node, Or):
        return any(matches(i, fields) for i in node.items)
    value = fields.get(node.field)
    if value is None:
        return False
    text = str(value)
    if isinstance(node, Term) and node.field != "message":
        v = text.lower()
        return v.startswith(node.text) if node.prefix else v == node.text
    return bool(_occurrences(node, [t for _, _, t in token_spans(text)]))


def _occurrences(node: Term | Phrase, tokens: list[str]) -> list[tuple[int, int]]:
    """(first, last) token indexes where a message term or phrase occurs."""
    if isinstance(node, Term):
        if node.prefix:
            return [(i, i) for i, t in enumerate(tokens) if t.startswith(node.text)]
        return [(i, i) for i, t in enumerate(tokens) if t == node.text]
    n = len(node.tokens)
    want = list(node.tokens)
    return [(i, i + n - 1) for i in range(len(tokens) - n + 1) if tokens[i : i + n] == want]


def positive_leaves(node: Node, negated: bool = False) -> list[Term | Phrase]:
    """The message terms and phrases a line is shown because of (those not under an odd number of `not`)."""
    if isinstance(node, Not):
        return positive_leaves(node.item, not negated)
    if isinstance(node, (And, Or)):
        return [leaf for i in node.items for leaf in positive_leaves(i, negated)]
    if isinstance(node, (Term, Phrase)) and node.field == "message" and not negated:
        return [node]
    return []


def highlight(node: Node, message: str) -> list[tuple[int, int]]:
    """Character ranges [start, end) of the message to highlight: every occurrence of a positive term or phrase,
    merged where they overlap, in order. A prefix term highlights the whole token it starts."""
    spans = token_spans(message)
    tokens = [t for _, _, t in spans]
    ranges: list[tuple[int, int]] = []
    for leaf in positive_leaves(node):
        ranges.extend((spans[a][0], spans[b][1]) for a, b in _occurrences(leaf, tokens))
    return merge_ranges(ranges)


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
