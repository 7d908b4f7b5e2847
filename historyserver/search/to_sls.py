"""The query in SLS's search syntax, over the logstore keys archive/sls_schema.py names.

Every term is asked of a key, never of the full-text index: an unqualified SLS term also matches the other keys'
values (a line with level ERROR would match `error`), and ours means the message. Values are quoted, so SLS takes
`and`, `*` and backslashes in them literally; a prefix `abc*` is left bare, since quotes would make its `*` literal.

Where SLS's index is looser than our meaning (a key it splits on delimiters, compared with a whole value here), the
SLS backend keeps the rows match.matches accepts. What SLS cannot express at all is refused (SearchRefused): more
than 30 conditions, a `not` over a phrase, a prefix of a numeric key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import SearchRefused
from .query import And, MatchAll, Node, Not, Or, Phrase, Term, walk

MAX_CONDITIONS = 30  # SLS's limit per query


@dataclass(frozen=True)
class SlsKeys:
    """Our field names -> the logstore's keys (`__tag__:name` for LogGroup tags), and which are numbers there."""

    fields: Mapping[str, str]
    numeric: frozenset[str] = field(default_factory=frozenset)  # our fields indexed as long/double

    @classmethod
    def default(cls) -> SlsKeys:
        from archive.sls_schema import LOG_INDEX_KEYS, SEARCH_KEYS

        numeric = frozenset(
            f for f, k in SEARCH_KEYS.items() if k in LOG_INDEX_KEYS and LOG_INDEX_KEYS[k].type != "text"
        )
        return cls(dict(SEARCH_KEYS), numeric)


def to_sls(node: Node, keys: SlsKeys | None = None) -> str:
    """The SLS search statement (the part before any `|`) meaning what `node` means."""
    keys = keys or SlsKeys.default()
    conditions = sum(1 for n in walk(node) if isinstance(n, (Term, Phrase)))
    if conditions > MAX_CONDITIONS:
        raise SearchRefused(
            f"SLS accepts at most {MAX_CONDITIONS} conditions in a query and this one has {conditions}: use the "
            "node/file/job/level filters, or search the archive"
        )
    if isinstance(node, MatchAll):
        return "*"
    text = _sls(node, keys, top=True)
    # SLS needs something to take `not` away from.
    return f"* and {text}" if isinstance(node, Not) else text


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sls(node: Node, keys: SlsKeys, top: bool = False) -> str:
    if isinstance(node, MatchAll):
        return "*"
    if isinstance(node, Not):
        if any(isinstance(n, Phrase) for n in walk(node.item)):
            raise SearchRefused(
                'SLS cannot search for the absence of a phrase (not "..."): search the words separately, or '
                "search the archive"
            )
        return f"not {_sls(node.item, keys)}"
    if isinstance(node, (And, Or)):
        op = " and " if isinstance(node, And) else " or "
        inner = op.join(_sls(i, keys) for i in node.items)
        return inner if top else f"({inner})"
    key = keys.fields.get(node.field)
    if key is None:
        raise SearchRefused(f"the SLS logstore has no key for the field {node.field!r}: search the archive")
    if isinstance(node, Phrase):
        return f"{key}: #{quote(' '.join(node.tokens))}"
    if node.field in keys.numeric:
        if node.prefix or not node.text.lstrip("-").isdigit():
            raise SearchRefused(f"{node.field} is a number on SLS: give its whole value (no wildcard, digits only)")
        return f"{key} = {node.text}"
    if node.prefix:
        return f"{key}: {node.text}*" if node.text else f"{key}: *"
    return f"{key}: {quote(node.text)}"
