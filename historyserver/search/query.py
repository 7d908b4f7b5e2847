"""The log-search query language: the part of SLS's search syntax users already know, parsed with lark (LALR).

    query   := or | (nothing)                  the empty query and `*` match every line
    or      := and ("or" and)*
    and     := not ("and"? not)*               adjacent terms with no operator mean `and`, as in SLS
    not     := "not" not | atom                `not` binds tightest, then `and`, then `or`
    atom    := "(" query ")" | FIELD ":" value | value
    value   := WORD | "phrase"

A line matches a term when one of its tokens (the message split on SLS's default delimiters, lower-cased) equals
it, or starts with it for `abc*`; a phrase when its tokens occur consecutively. An unquoted word containing
delimiters (`a/b`) is the phrase of its tokens. Other fields match their whole value, case-insensitively.
Nothing here touches a backend: to_sql.py and to_sls.py translate the tree, match.py evaluates it in Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Union

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

FIELDS = (
    "message",
    "node_id",
    "file",
    "job_id",
    "level",
    "worker_id",
    "pid",
    "task_name",
    "actor_name",
    "component",
    "session",
)
DELIMITERS = ", '\";=()[]{}?@&<>/:\n\t\r"  # SLS's default token delimiters
MAX_QUERY_CHARS = 4096
MAX_DEPTH = 32  # nesting of parentheses and `not`: every consumer of the tree recurses over it

_SPLIT = re.compile("[" + re.escape(DELIMITERS) + "]+")


def tokenize(text: str) -> list[str]:
    """Split on DELIMITERS, drop empties, lower-case: the tokens a term is compared with.

    str.lower() rather than casefold(): DuckDB's lower() and SLS lower-case per character, and casefold would
    turn `ß` into `ss`, a different token than the backends see."""
    return [t for t in _SPLIT.split(text.lower()) if t]


@dataclass(frozen=True)
class Term:
    """One token of the message (`text` lower-case, no delimiters), or a field's whole value (lower-case)."""

    text: str
    field: str = "message"
    prefix: bool = False  # `abc*`


@dataclass(frozen=True)
class Phrase:
    tokens: tuple[str, ...]
    field: str = "message"


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class MatchAll:
    pass


Node = Union[Term, Phrase, And, Or, Not, MatchAll]  # noqa: UP007 (dataclass annotations above resolve it at runtime)


class QuerySyntaxError(ValueError):
    """A query that does not parse: where (0-based character) and what would have been accepted there."""

    def __init__(self, message: str, position: int, expected: tuple[str, ...] = ()) -> None:
        self.message = message
        self.position = position
        self.expected = expected
        text = f"{message} at position {position}"
        if expected:
            text += f"; expected {_or_list(expected)}"
        super().__init__(text)


_GRAMMAR = r"""
    ?start: or_expr
          |                            -> match_all
    ?or_expr: and_expr (_OR and_expr)*
    ?and_expr: not_expr (_AND? not_expr)*
    ?not_expr: _NOT not_expr           -> negate
             | atom
    ?atom: "(" or_expr ")"
         | FIELD ":" (WORD | PHRASE)   -> field
         | WORD                        -> word
         | PHRASE                      -> phrase

    // A field name is a name followed by a colon; keywords only when they stand alone (`android` is a word).
    FIELD.3: /[A-Za-z_][A-Za-z0-9_]*(?=[ \t\r\n]*:)/
    _AND.2: /and(?![^\s()":])/i
    _OR.2: /or(?![^\s()":])/i
    _NOT.2: /not(?![^\s()":])/i
    WORD: /[^\s()":]+/
    PHRASE: /"(?:[^"\\]|\\.)*"/s

    %import common.WS
    %ignore WS
"""

_PARSER = Lark(_GRAMMAR, parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=False)

# What the user reads instead of lark's terminal names.
_EXPECTED_NAMES = {
    "WORD": "a word",
    "PHRASE": 'a "quoted phrase"',
    "FIELD": "a field name",
    "LPAR": '"("',
    "RPAR": '")"',
    "COLON": '":"',
    "_AND": '"and"',
    "_OR": '"or"',
    "_NOT": '"not"',
    "$END": "the end of the query",
}
_EXPECTED_ORDER = list(_EXPECTED_NAMES.values())


def parse(q: str) -> Node:
    """The query's tree; raises QuerySyntaxError naming the position and what was expected there."""
    if len(q) > MAX_QUERY_CHARS:
        raise QuerySyntaxError(
            f"the query is {len(q)} characters long, more than the {MAX_QUERY_CHARS} allowed; narrow it with "
            "filters (node, file, job, level, time) instead",
            MAX_QUERY_CHARS,
        )
    try:
        tree = _PARSER.parse(q)
    except UnexpectedInput as e:
        raise _syntax_error(q, e) from None
    _check_depth(tree)
    try:
        node = _ToAst().transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, QuerySyntaxError):
            raise e.orig_exc from None
        raise
    assert isinstance(node, (Term, Phrase, And, Or, Not, MatchAll))
    return node


def _syntax_error(q: str, e: UnexpectedInput) -> QuerySyntaxError:
    pos = e.pos_in_stream if e.pos_in_stream is not None else len(q)
    if isinstance(e, UnexpectedToken) and e.token.type == "$END":
        pos = len(q)
    if isinstance(e, UnexpectedCharacters):
        allowed: set[str] = set(e.allowed or ())
        if q[pos] == '"':
            return QuerySyntaxError('unterminated quote: close the phrase with "', pos)
    elif isinstance(e, (UnexpectedToken, UnexpectedEOF)):
        allowed = set(e.expected or ())
    else:
        allowed = set()
    expected = tuple(sorted({_EXPECTED_NAMES.get(a, a) for a in allowed}, key=_expected_rank))
    found = "end of the query" if pos >= len(q) else repr(q[pos])
    message = f"unexpected {found}"
    if pos < len(q) and q[pos] == ":":
        message += ' (a colon follows a field name; to search for text containing ":", quote it)'
    return QuerySyntaxError(message, pos, expected)


def _expected_rank(name: str) -> tuple[int, str]:
    return (_EXPECTED_ORDER.index(name) if name in _EXPECTED_ORDER else len(_EXPECTED_ORDER), name)


def _check_depth(tree: Tree[Token]) -> None:
    """Iteratively, before anything recurses over the tree: `((((...` must not exhaust the interpreter's stack."""
    stack: list[tuple[Tree[Token] | Token, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, Tree):
            continue
        if depth > MAX_DEPTH:
            pos = node.meta.start_pos if not node.meta.empty else 0
            raise QuerySyntaxError(f"the query nests deeper than {MAX_DEPTH} levels; flatten it", pos)
        stack.extend((child, depth + 1) for child in node.children)


def _or_list(items: tuple[str, ...]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


@v_args(inline=True)
class _ToAst(Transformer[Token, Node]):
    def match_all(self) -> Node:
        return MatchAll()

    def word(self, tok: Token) -> Node:
        return _word(str(tok), "message", tok.start_pos or 0)

    def phrase(self, tok: Token) -> Node:
        return _phrase(_unquote(str(tok)), "message", tok.start_pos or 0)

    def field(self, name: Token, value: Token) -> Node:
        field = str(name).lower()
        pos = name.start_pos or 0
        if field not in FIELDS:
            raise QuerySyntaxError(
                f"unknown field {str(name)!r}: the fields are {', '.join(FIELDS)} (to search for text containing "
                '":", quote it)',
                pos,
            )
        quoted = value.type == "PHRASE"
        raw = _unquote(str(value)) if quoted else str(value)
        vpos = value.start_pos or 0
        if field == "message":
            return _phrase(raw, field, vpos) if quoted else _word(raw, field, vpos)
        if quoted:
            if not raw:
                raise QuerySyntaxError(f"empty value for {field}", vpos)
            return Term(raw.lower(), field)
        if "?" in raw:
            raise QuerySyntaxError(_NO_QUESTION_MARK, vpos + raw.index("?"))
        star = raw.find("*")
        if star != -1 and star != len(raw) - 1:
            raise QuerySyntaxError(_STAR_SUFFIX_ONLY, vpos + star)
        return Term(raw[:-1].lower(), field, prefix=True) if star != -1 else Term(raw.lower(), field)

    def negate(self, item: Node) -> Node:
        return Not(item)

    def and_expr(self, *items: Node) -> Node:
        return _combine(And, items)

    def or_expr(self, *items: Node) -> Node:
        return _combine(Or, items)


_NO_QUESTION_MARK = (
    '"?" is not a wildcard here (SLS\'s single-character wildcard has no exact equivalent in our token index): use '
    '"*" at the end of a word, or quote the text to search for it'
)
_STAR_SUFFIX_ONLY = '"*" is only allowed at the end of a word (a prefix search such as raylet*)'


def _word(raw: str, field: str, pos: int) -> Node:
    if raw == "*":
        return MatchAll()
    if "?" in raw:
        raise QuerySyntaxError(_NO_QUESTION_MARK, pos + raw.index("?"))
    star = raw.find("*")
    if star != -1 and star != len(raw) - 1:
        raise QuerySyntaxError(_STAR_SUFFIX_ONLY, pos + star)
    body = raw[:-1] if star != -1 else raw
    tokens = tokenize(body)
    if not tokens:
        raise QuerySyntaxError(
            f"{raw!r} has nothing to search for: it is made of token delimiters only ({DELIMITERS!r})", pos
        )
    if star != -1:
        if len(tokens) > 1 or body[-1] in DELIMITERS:
            raise QuerySyntaxError(
                f"a wildcard applies to one token, and {raw!r} contains delimiters; quote the fixed part as a "
                "phrase and add the wildcard word separately",
                pos,
            )
        return Term(tokens[0], field, prefix=True)
    return Term(tokens[0], field) if len(tokens) == 1 else Phrase(tuple(tokens), field)


def _phrase(text: str, field: str, pos: int) -> Node:
    tokens = tokenize(text)
    if not tokens:
        raise QuerySyntaxError("the phrase has nothing to search for (empty, or token delimiters only)", pos)
    return Term(tokens[0], field) if len(tokens) == 1 else Phrase(tuple(tokens), field)


def _unquote(quoted: str) -> str:
    r"""Inside a phrase `\"` is a quote and `\\` a backslash; any other backslash is itself (C:\tmp stays)."""
    return re.sub(r'\\([\\"])', r"\1", quoted[1:-1])


def _combine(kind: type[And] | type[Or], items: tuple[Node, ...]) -> Node:
    """Flatten nested and/or of the same kind; `*` is neutral in `and` and absorbing in `or`."""
    flat: list[Node] = []
    for item in items:
        flat.extend(item.items if isinstance(item, kind) else (item,))
    if kind is And:
        flat = [i for i in flat if not isinstance(i, MatchAll)]
        if not flat:
            return MatchAll()
    elif any(isinstance(i, MatchAll) for i in flat):
        return MatchAll()
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents first."""
    yield node
    if isinstance(node, (And, Or)):
        for item in node.items:
            yield from walk(item)
    elif isinstance(node, Not):
        yield from walk(node.item)


def literal_terms(node: Node) -> list[Term | Phrase]:
    """The positive message terms and phrases every match must contain (the conjuncts at the top, outside any
    `or` and `not`): what narrows a regex-mode or term-index search."""
    if isinstance(node, (Term, Phrase)):
        return [node] if node.field == "message" else []
    if isinstance(node, And):
        return [t for item in node.items for t in literal_terms(item)]
    return []


def unparse(node: Node) -> str:
    """The query text of a tree: parse(unparse(n)) == n. Pages and the CLI build links with it."""
    if isinstance(node, MatchAll):
        return "*"
    if isinstance(node, Term):
        if node.field == "message":
            if node.prefix:
                return node.text + "*"
            plain = node.text not in ("and", "or", "not") and _PLAIN_WORD.fullmatch(node.text)
            return node.text if plain else _quote(node.text)
        if node.prefix:
            if node.text and not _PLAIN_WORD.fullmatch(node.text):
                raise ValueError(f"a prefix of {node.field} cannot contain spaces, quotes, parentheses or colons")
            return f"{node.field}: {node.text}*"
        return f"{node.field}: {_quote(node.text)}"
    if isinstance(node, Phrase):
        text = _quote(" ".join(node.tokens))
        return text if node.field == "message" else f"{node.field}: {text}"
    if isinstance(node, Not):
        inner = node.item
        return "not " + (f"({unparse(inner)})" if isinstance(inner, (And, Or)) else unparse(inner))
    if isinstance(node, And):
        return " and ".join(f"({unparse(i)})" if isinstance(i, Or) else unparse(i) for i in node.items)
    return " or ".join(unparse(i) for i in node.items)


_PLAIN_WORD = re.compile(r'[^\s()":?*]+')


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
